/**
 * Column values as the domain types hold them: booleans come back as 0/1 (or '0'/'1') from MariaDB
 * and SQLite, times as epoch ms (a number, or a BIGINT string from MariaDB).
 */
export const bool = (v: unknown): boolean => v === true || v === 1 || v === '1';

/** An epoch-ms column that may be NULL, as a Date or null. */
export const dateOrNull = (v: unknown): Date | null => (v === null || v === undefined ? null : new Date(Number(v)));

/**
 * The comparison key of a username or an account name (`user.username_key`,
 * `account.account_name_key`, migration 012): names match whatever their case, as CloudStack's
 * case-insensitive MySQL collation has it, by one rule on both databases (Unicode lower-casing, so
 * accents stay distinct), and through an index.
 */
export const nameKey = (name: string): string => name.toLowerCase();

/** Length of the key columns (`user.username_key`, `account.account_name_key`: VARCHAR(255)). */
export const NAME_KEY_MAX = 255;
