import { createHash } from 'node:crypto';
import * as pkcs11js from 'pkcs11js';
import { KmsError } from '../../core/errors';
import type { HsmProfileConfig } from '../provider';
import { breaksSession } from './errors';
import { macLabel, sync } from './mechanisms';
import { acquireModule, closeSession, openLoggedInSession, releaseModule, type Pkcs11Module } from './module';
import { parsePkcs11Profile, type Pkcs11Profile } from './profile';
import { SessionPool } from './session-pool';

/** Object handles of one KEK and its HMAC key, valid in every session of this process. */
export interface KekHandles {
  kek: Buffer;
  mac: Buffer;
}

/**
 * What the provider keeps per HSM profile: the shared library module, the resolved slot, a bounded
 * logged-in session pool and a cache of KEK handles by label. `fingerprint` changes whenever the
 * profile's details do, so an edited profile is reconnected even without invalidateProfile.
 */
export interface ProfileState {
  readonly profileId: string;
  readonly name: string;
  readonly fingerprint: string;
  readonly module: Pkcs11Module;
  readonly slot: Buffer;
  readonly pool: SessionPool<Buffer>;
  readonly handles: Map<string, KekHandles>;
  /** The module generation the sessions and handles belong to (see Pkcs11Module.generation). */
  readonly generation: number;
}

/** True when the library was initialised again since the state was built: its sessions and handles are dead. */
export const isStale = (state: ProfileState): boolean => state.generation !== state.module.generation;

/** A digest of the details, used only to notice a change; it is never logged or stored. */
export function fingerprintOf(profile: HsmProfileConfig): string {
  const sorted = Object.keys(profile.details).sort().map((k) => [k, profile.details[k]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
}

const slotNumber = (slot: Buffer): bigint => (slot.length >= 8 ? slot.readBigUInt64LE(0) : BigInt(slot.readUInt32LE(0)));

/** Finds the profile's token; every selector given must name the same slot. Throws 'param' naming it. */
function resolveSlot(module: Pkcs11Module, p: Pkcs11Profile, profileName: string): Buffer {
  const slots = sync('C_GetSlotList', () => module.lib.C_GetSlotList(true));
  const found: Array<[string, Buffer]> = [];
  if (p.tokenLabel !== undefined) {
    const want = p.tokenLabel;
    const s = slots.find((slot) => sync('C_GetTokenInfo', () => module.lib.C_GetTokenInfo(slot)).label.trim() === want);
    if (!s) throw new KmsError('param', `HSM profile ${profileName}: no token labelled '${want}' in ${module.path}`);
    found.push([`token_label '${want}'`, s]);
  }
  if (p.slot !== undefined) {
    const want = BigInt(p.slot);
    const s = slots.find((slot) => slotNumber(slot) === want);
    if (!s) throw new KmsError('param', `HSM profile ${profileName}: slot ${p.slot} has no token in ${module.path}`);
    found.push([`slot ${p.slot}`, s]);
  }
  if (p.slotListIndex !== undefined) {
    const s = slots[p.slotListIndex];
    if (!s) throw new KmsError('param', `HSM profile ${profileName}: slot_list_index ${p.slotListIndex} is out of range (${slots.length} token slots in ${module.path})`);
    found.push([`slot_list_index ${p.slotListIndex}`, s]);
  }
  const [first, ...rest] = found;
  for (const [what, s] of rest) {
    if (!s.equals(first[1])) throw new KmsError('param', `HSM profile ${profileName}: ${first[0]} and ${what} name different tokens`);
  }
  return first[1];
}

/**
 * Connects a profile: loads (or shares) the library, finds the token and builds the session pool.
 * Opening sessions and logging in happen lazily in the pool. Throws KmsError ('param' for bad
 * details or a missing token, 'provider' for a library that will not load); nothing is left held.
 */
export function openProfileState(profile: HsmProfileConfig, acquireTimeoutMs: number): ProfileState {
  const p = parsePkcs11Profile(profile.name, profile.details);
  const module = acquireModule(p.library);
  try {
    const generation = module.generation;
    const slot = resolveSlot(module, p, profile.name);
    // A session of a dead generation is never passed to the library: after C_Initialize its handle
    // number may belong to a new session of another caller.
    const pool = new SessionPool<Buffer>(
      `HSM profile ${profile.name}`,
      {
        open: () => openLoggedInSession(module, slot, p.pin),
        close: (s, last) => { if (module.generation === generation) closeSession(module, slot, s, last); },
      },
      p.maxSessions,
      acquireTimeoutMs,
      breaksSession,
    );
    return { profileId: profile.id, name: profile.name, fingerprint: fingerprintOf(profile), module, slot, pool, handles: new Map(), generation };
  } catch (e) {
    releaseModule(module);
    throw e;
  }
}

/** Drains the pool (waiting for sessions in use), logs out with the last session and releases the library. */
export async function closeProfileState(state: ProfileState): Promise<void> {
  state.handles.clear();
  await state.pool.drain();
  releaseModule(state.module);
}

/** Handles of every object labelled `label` (normally one). Synchronous: C_FindObjects has no async form. */
export function findByLabel(state: ProfileState, session: Buffer, label: string): Buffer[] {
  const { lib } = state.module;
  sync('C_FindObjectsInit', () => lib.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]));
  try {
    return sync('C_FindObjects', () => lib.C_FindObjects(session, 16));
  } finally {
    sync('C_FindObjectsFinal', () => lib.C_FindObjectsFinal(session));
  }
}

/** The KEK's handles, cached after the first lookup. Throws 'param' "KEK not found: <label>". */
export function kekHandles(state: ProfileState, session: Buffer, label: string): KekHandles {
  const hit = state.handles.get(label);
  if (hit) return hit;
  const [kek] = findByLabel(state, session, label);
  const [mac] = findByLabel(state, session, macLabel(label));
  if (!kek || !mac) throw new KmsError('param', `KEK not found: ${label}${kek ? ' (its HMAC key is missing)' : ''}`);
  const handles = { kek, mac };
  state.handles.set(label, handles);
  return handles;
}
