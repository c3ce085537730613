/** CloudStack's date forms on the wire (reference/cloudstack-api-protocol.md). */

/**
 * DateUtil.parseTZDateString's accepted forms (reference §1.4): ISO offset (`Z`, `+00:00`), `+0000`,
 * and fractional seconds. Returns undefined when unparseable.
 */
export function parseExpires(value: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?(Z|[+-]\d{2}:?\d{2})?$/.exec(value);
  if (!m) return undefined;
  const zone = m[8] ?? m[9];
  if (!zone) return undefined;
  const tz = zone === 'Z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
  const frac = m[7] ? m[7].slice(0, 4) : '';
  const d = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${frac}${tz}`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** CloudStack's date format: 2026-01-31T12:00:00+0000 (always UTC here). */
export function formatDate(ms: Date | number | null | undefined): string | undefined {
  if (ms === null || ms === undefined) return undefined;
  return new Date(ms instanceof Date ? ms.getTime() : Number(ms)).toISOString().replace(/\.\d{3}Z$/, '+0000');
}
