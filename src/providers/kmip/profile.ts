import { readFileSync, statSync } from 'node:fs';
import { KmsError } from '../../core/errors';
import type { ProtocolVersion } from './messages';

/** The detail keys a KMIP profile accepts; anything else is reported as a problem. */
export const KMIP_DETAIL_KEYS = [
  'host', 'port', 'ca', 'client_certificate', 'private_key', 'username', 'password', 'kmipversion', 'max_connections', 'batch_items',
] as const;

/** @defaultValue of `port`: KMIP's registered port. */
export const DEFAULT_KMIP_PORT = 5696;
/** @defaultValue of `max_connections`: TLS connections kept per profile and server process. */
export const DEFAULT_MAX_CONNECTIONS = 4;
/** @defaultValue of `batch_items`: operations per KMIP request (a batch of more DEKs is split). */
export const DEFAULT_BATCH_ITEMS = 64;
/**
 * The versions a profile may name. 1.4 wraps with AES-GCM on the server (its Authenticated
 * Encryption fields carry the aad and tag); 1.2 and 1.3 lack those fields, so they wrap with AES-CBC
 * and authenticate with AES-CMAC by a second server key (encrypt-then-MAC; kmip-provider.ts).
 */
export const KMIP_VERSIONS = ['1.2', '1.3', '1.4'] as const;
export const DEFAULT_KMIP_VERSION = '1.4';

/** A validated KMIP profile. `key` and `password` are secrets: never log or print this object whole. */
export interface KmipProfile {
  readonly host: string;
  readonly port: number;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  readonly username?: string;
  readonly password?: string;
  readonly version: ProtocolVersion;
  readonly maxConnections: number;
  readonly batchItems: number;
}

const INT = /^[1-9][0-9]*$/;
const HOST = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9A-Fa-f:.]+\]?$/;

/**
 * A PEM detail given as text or as an absolute file path: the PEM text, or a problem naming the
 * detail. Only the detail's name and the path appear in problems, never the content.
 */
function pemOf(name: string, value: string | undefined, marker: RegExp, required: string): { pem?: string; problem?: string } {
  if (value === undefined || value.trim() === '') return { problem: `Detail '${name}' is required: ${required}` };
  const v = value.trim();
  let text = v;
  if (!v.startsWith('-----BEGIN')) {
    if (!v.startsWith('/')) return { problem: `Detail '${name}' must be PEM text (-----BEGIN …) or an absolute file path` };
    try {
      const st = statSync(v);
      if (!st.isFile()) return { problem: `Detail '${name}': ${v} is not a regular file` };
      if (st.size > MAX_PEM_FILE_BYTES) return { problem: `Detail '${name}': the file ${v} is over ${MAX_PEM_FILE_BYTES} bytes, too large for a PEM certificate or key` };
      text = readFileSync(v, 'utf8');
    } catch (e) {
      return { problem: `Detail '${name}': the file ${v} cannot be read (${String((e as { code?: unknown }).code ?? 'error')})` };
    }
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text)) {
    return { problem: `Detail '${name}' holds a password-protected (ENCRYPTED) private key, which the KMS cannot open: give the key unencrypted (PKCS#8 or PKCS#1 PEM)` };
  }
  if (!marker.test(text)) return { problem: `Detail '${name}' does not hold the expected PEM block (${required})` };
  return { pem: text };
}

const CERT = /-----BEGIN CERTIFICATE-----/;
const KEY = /-----BEGIN (RSA |EC )?PRIVATE KEY-----/;
/** A PEM file larger than this is not a certificate or key (and is not read whole). */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

interface Parsed { problems: string[]; profile?: KmipProfile }

function parse(details: Readonly<Record<string, string>>): Parsed {
  const problems: string[] = [];
  const allowed = new Set<string>(KMIP_DETAIL_KEYS);
  for (const k of Object.keys(details)) {
    if (!allowed.has(k)) problems.push(`Unknown detail '${k}' (allowed: ${KMIP_DETAIL_KEYS.join(', ')})`);
  }
  const host = details.host?.trim();
  if (!host) problems.push("Detail 'host' is required: the KMIP server's host name or IP address");
  else if (!HOST.test(host)) problems.push("Detail 'host' must be a host name or an IP address");
  const int = (name: string, fallback: number, max: number): number => {
    const v = details[name];
    if (v === undefined) return fallback;
    if (!INT.test(v.trim()) || Number(v) > max) {
      problems.push(`Detail '${name}' must be an integer from 1 to ${max}`);
      return fallback;
    }
    return Number(v);
  };
  const port = int('port', DEFAULT_KMIP_PORT, 65535);
  const maxConnections = int('max_connections', DEFAULT_MAX_CONNECTIONS, 64);
  const batchItems = int('batch_items', DEFAULT_BATCH_ITEMS, 1000);
  const ca = pemOf('ca', details.ca, CERT, "the CA certificate that signed the KMIP server's certificate");
  const cert = pemOf('client_certificate', details.client_certificate, CERT, "this server's client certificate (clientAuth)");
  const key = pemOf('private_key', details.private_key, KEY, "the client certificate's private key, unencrypted PEM");
  for (const r of [ca, cert, key]) if (r.problem) problems.push(r.problem);
  const version = (details.kmipversion ?? DEFAULT_KMIP_VERSION).trim();
  if (!(KMIP_VERSIONS as readonly string[]).includes(version)) {
    problems.push(`Detail 'kmipversion' must be ${KMIP_VERSIONS.slice(0, -1).join(', ')} or ${KMIP_VERSIONS[KMIP_VERSIONS.length - 1]} (got ${version})`);
  }
  if (details.password !== undefined && !details.username) problems.push("Detail 'password' needs 'username'");
  if (problems.length) return { problems };
  const [major, minor] = version.split('.').map(Number);
  return {
    problems,
    profile: {
      host: host!.replace(/^\[|\]$/g, ''), port, ca: ca.pem!, cert: cert.pem!, key: key.pem!,
      username: details.username || undefined, password: details.password, version: { major, minor }, maxConnections, batchItems,
    },
  };
}

/**
 * Problems with KMIP profile details, as sentences naming the detail; [] when valid. `host`, `ca`,
 * `client_certificate` and `private_key` are required (PEM text or an absolute path to a PEM file);
 * `port` defaults to 5696; `username`/`password` are sent as the KMIP Username and Password
 * credential; `kmipversion` is 1.2, 1.3 or 1.4 (default). Never throws; never echoes the key or password.
 */
export function kmipProfileProblems(details: Readonly<Record<string, string>>): string[] {
  return parse(details).problems;
}

/** The typed profile; throws KmsError('param') listing every problem when the details are invalid. */
export function parseKmipProfile(profileName: string, details: Readonly<Record<string, string>>): KmipProfile {
  const { problems, profile } = parse(details);
  if (!profile) throw new KmsError('param', `HSM profile ${profileName} is invalid: ${problems.join('; ')}`);
  return profile;
}
