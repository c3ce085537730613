import { vectors } from '../support/vectors';
import { canonicalString, javaUrlEncode, sign, verifySignature } from '../../src/api/signature';
import { parseExpires } from '../../src/core/dates';

const params = (p: Record<string, string>) => new Map(Object.entries(p));

describe('request signatures (reference/cloudstack-api-protocol.md §1.5 vectors)', () => {
  it.each(vectors.vectors.map((v) => [v.name, v] as const))('accepts the vector "%s"', (_name, v) => {
    expect(verifySignature(params(v.params), v.signature, vectors.secretKey)).toBe(v.accept);
  });

  it('computes the Java-encoded signature of the first vector exactly', () => {
    const v = vectors.vectors[0]!;
    expect(sign(canonicalString(params(v.params)), vectors.secretKey)).toBe(v.signature);
  });

  it('rejects a signature made with another secret key', () => {
    const v = vectors.vectors[0]!;
    expect(verifySignature(params(v.params), v.signature, vectors.secretKey + 'x')).toBe(false);
  });

  it('rejects a signature when a signed value was changed', () => {
    const v = vectors.vectors[1]!;
    expect(verifySignature(params({ ...v.params, name: 'other' }), v.signature, vectors.secretKey)).toBe(false);
  });

  it('encodes like java.net.URLEncoder, with %20 for spaces', () => {
    expect(javaUrlEncode("a b*~!'()/:ü+")).toBe('a%20b*%7E%21%27%28%29%2F%3A%C3%BC%2B');
  });

  it.each([
    ['2030-01-01T00:00:00+0000', Date.UTC(2030, 0, 1)],
    ['2030-01-01T00:00:00Z', Date.UTC(2030, 0, 1)],
    ['2030-01-01T01:00:00+01:00', Date.UTC(2030, 0, 1)],
    ['2030-01-01T00:00:00.123456Z', Date.UTC(2030, 0, 1, 0, 0, 0, 123)],
  ])('parses the expires form %s', (text, ms) => {
    expect(parseExpires(text)?.getTime()).toBe(ms);
  });

  it('refuses an expires without a zone', () => {
    expect(parseExpires('2030-01-01T00:00:00')).toBeUndefined();
    expect(parseExpires('tomorrow')).toBeUndefined();
  });
});
