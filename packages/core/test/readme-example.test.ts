import { describe, expect, it } from 'vitest';
import { main } from '../examples/minimal.js';

describe('the README example of @grantline/core', () => {
  it('runs a case to verified', async () => {
    const r = await main();
    expect(r.state).toBe('verified');
    expect(r.events[0]).toBe('requested');
    expect(r.events.at(-1)).toBe('verified');
    expect(r.events).toContain('usage');
  });
});
