import { makeGrant } from '@grantline/core/testing';
import { describe, expect, it } from 'vitest';
import { createMemoryStore } from '../src/index.js';

describe('memory store: audit events are immutable', () => {
  it('hands out frozen events: an edit throws and the stored trail is unchanged', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    const [e] = await s.events(grant.id);
    expect(() => {
      (e as { type: string }).type = 'forged';
    }).toThrow(TypeError);
    expect(() => {
      (e!.actor as { id: string }).id = 'mallory';
    }).toThrow(TypeError);
    const [again] = await s.allEvents(0, 10);
    expect(again!.type).toBe(events[0]!.type);
    expect(again!.actor.id).toBe(events[0]!.actor.id);
  });

  it('keeps no reference to the caller’s event objects', async () => {
    const s = createMemoryStore();
    const { grant, events } = makeGrant();
    await s.create(grant, events);
    (events[0]!.data as Record<string, unknown>).injected = true;
    const [stored] = await s.events(grant.id);
    expect(stored!.data).not.toHaveProperty('injected');
  });
});
