import raw from '../fixtures/signatures.json';

/** The signature vectors of reference/cloudstack-api-protocol.md §1.5 (copied from shared/vectors). */
export interface SignatureVector { name: string; params: Record<string, string>; signature: string; accept: boolean; wire?: string }
export const vectors = raw as unknown as { apiKey: string; secretKey: string; vectors: SignatureVector[] };
