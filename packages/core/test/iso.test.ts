import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isoAt, isoOf } from '../src/iso.js';

describe('isoAt / isoOf', () => {
  it('write what toISOString writes, for any time a Date holds (fractions truncated as Date does)', () => {
    fc.assert(
      fc.property(fc.double({ min: -8.64e15, max: 8.64e15, noNaN: true }), (ms) => {
        expect(isoAt(ms)).toBe(new Date(ms).toISOString());
      }),
      { numRuns: 5_000 },
    );
  });

  it('are right across second boundaries, negative times and extended years', () => {
    const times = [
      0, -0, 999, 1000, 1001, -1, -999, -1000, -1001, 0.5, -0.5, 1.9, -1.9, 1_764_828_304_999,
      1_764_828_305_000, 1_764_828_305_001, 253_402_300_799_999, 253_402_300_800_000, -62_198_755_200_001,
      8.64e15, -8.64e15,
    ];
    // Each twice in a row (the cached second) and after another second (a fresh one).
    for (const t of times) {
      for (const ms of [t, t, t + 1_000, t]) {
        if (Math.abs(ms) <= 8.64e15) expect(isoAt(ms)).toBe(new Date(ms).toISOString());
      }
      expect(isoOf(new Date(t))).toBe(new Date(t).toISOString());
    }
  });

  it('throw the RangeError toISOString throws for a time a Date cannot hold', () => {
    isoAt(8.64e15); // the second of the largest valid time is now the cached one
    for (const ms of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      8.64e15 + 1,
      -8.64e15 - 1,
    ]) {
      expect(() => isoAt(ms)).toThrow(RangeError);
    }
    expect(() => isoOf(new Date(Number.NaN))).toThrow(RangeError);
  });
});
