/**
 * Column values as the domain types hold them: booleans come back as 0/1 (or '0'/'1') from MariaDB
 * and SQLite, times as epoch ms (a number, or a BIGINT string from MariaDB).
 */
export const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';

/** An epoch-ms column that may be NULL, as a Date or null. */
export const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(Number(v)));
