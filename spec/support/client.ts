import { javaUrlEncode, sign, canonicalString } from '../../src/api/signature';

/** A parsed API answer: status, the body under its wrapper, the wrapper name and headers. */
export interface ApiAnswer {
  status: number;
  wrapper: string;
  body: Record<string, any>;
  raw: string;
  headers: Headers;
}

export type Params = Record<string, string | number | boolean>;

const toStrings = (p: Params): Record<string, string> => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, String(v)]));

async function parse(res: Response): Promise<ApiAnswer> {
  const raw = await res.text();
  let wrapper = '';
  let body: Record<string, any> = {};
  try {
    const json = JSON.parse(raw);
    wrapper = Object.keys(json)[0] ?? '';
    body = json[wrapper] ?? {};
  } catch {
    /* XML or plain text */
  }
  return { status: res.status, wrapper, body, raw, headers: res.headers };
}

/** Builds a signed query string the way cmk does (apiKey, Java encoding of values, sorted names). */
export function signedQuery(params: Params, apiKey: string, secretKey: string, opts: { version3ExpiresAt?: Date } = {}): string {
  const all: Record<string, string> = { response: 'json', ...toStrings(params), apiKey };
  if (opts.version3ExpiresAt) {
    all.signatureVersion = '3';
    all.expires = opts.version3ExpiresAt.toISOString().replace(/\.\d{3}Z$/, '+0000');
  }
  const signature = sign(canonicalString(new Map(Object.entries(all))), secretKey);
  const q = Object.keys(all).sort().map((k) => `${k}=${javaUrlEncode(all[k]!)}`).join('&');
  return `${q}&signature=${encodeURIComponent(signature)}`;
}

/** A client of one server: signed GETs (cmk), sessions (UI), raw requests. */
export class ApiClient {
  constructor(readonly baseUrl: string) {}

  async raw(query: string, init: RequestInit = {}): Promise<ApiAnswer> {
    return parse(await fetch(`${this.baseUrl}/client/api?${query}`, init));
  }

  /** A cmk-style signed GET (signature v2, or v3 when expires is given). */
  async signed(keys: { apiKey: string; secretKey: string }, params: Params, opts: { version3ExpiresAt?: Date } = {}): Promise<ApiAnswer> {
    return this.raw(signedQuery(params, keys.apiKey, keys.secretKey, opts));
  }

  /** Logs in as the UI does; returns a session to call with. */
  async login(username: string, password: string, domain = '/'): Promise<Session> {
    const res = await fetch(`${this.baseUrl}/client/api/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ command: 'login', username, password, domain, response: 'json' }).toString(),
    });
    const answer = await parse(res);
    if (answer.status !== 200) throw new Error(`login failed: ${answer.raw}`);
    const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]!).join('; ');
    return new Session(this, answer.body.sessionkey, cookies, answer.body);
  }
}

/** A logged-in UI session: sessionkey parameter plus the JSESSIONID and sessionkey cookies. */
export class Session {
  constructor(readonly client: ApiClient, readonly sessionKey: string, readonly cookies: string, readonly login: Record<string, any>) {}

  async get(params: Params): Promise<ApiAnswer> {
    const q = new URLSearchParams({ ...toStrings(params), response: 'json', sessionkey: this.sessionKey }).toString();
    return this.client.raw(q, { headers: { cookie: this.cookies } });
  }

  async post(params: Params): Promise<ApiAnswer> {
    const res = await fetch(`${this.client.baseUrl}/client/api/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: this.cookies },
      body: new URLSearchParams({ ...toStrings(params), response: 'json', sessionkey: this.sessionKey }).toString(),
    });
    return parse(res);
  }
}
