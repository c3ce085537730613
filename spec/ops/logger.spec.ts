/** The production logger: JSON lines, secret-bearing fields redacted, unknown levels refused. */
import { createLogger, parseLogLevel, withLogContext } from '../../src/core/logger';

const capture = (level: 'debug' | 'info' = 'debug') => {
  const lines: string[] = [];
  const logger = createLogger({ level, destination: { write: (l: string) => { lines.push(l); } } });
  return { logger, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, any>), raw: () => lines.join('') };
};

describe('createLogger', () => {
  it('replaces secret-bearing fields with ***** at the top level and one level down', () => {
    const { logger, parsed, raw } = capture();
    logger.info('with secrets', {
      password: 'pw-1234567', pin: '98765432', secretkey: 'sk-abcdefgh', signature: 'sig-abcdefgh', sessionkey: 'sess-abcdefgh',
      params: { password: 'pw-7654321', details: [{ name: 'pin', value: 'pin-in-details' }] },
      details: [{ name: 'pin', value: 'pin-top-details' }], dek: 'dek-abcdefgh', keep: 'visible',
    });
    for (const secret of ['pw-1234567', '98765432', 'sk-abcdefgh', 'sig-abcdefgh', 'sess-abcdefgh', 'pw-7654321', 'pin-in-details', 'pin-top-details', 'dek-abcdefgh']) {
      expect(raw()).not.toContain(secret);
    }
    expect(parsed()[0]).toMatchObject({ level: 'info', msg: 'with secrets', password: '*****', keep: 'visible', details: [{ name: 'pin', value: '*****' }] });
  });

  it('adds the request id and job of the work in progress to every line', async () => {
    const { logger, parsed } = capture();
    await withLogContext({ requestId: 'req-1' }, async () => {
      await new Promise((r) => setTimeout(r, 1));
      logger.debug('inside');
      withLogContext({ job: 'job-1' }, () => logger.info('in the job'));
    });
    logger.info('outside');
    expect(parsed().map((l) => [l.msg, l.requestId, l.job])).toEqual([['inside', 'req-1', undefined], ['in the job', 'req-1', 'job-1'], ['outside', undefined, undefined]]);
  });

  it('drops lines below its level', () => {
    const { logger, parsed } = capture('info');
    logger.debug('hidden');
    logger.warn('shown');
    expect(parsed().map((l) => l.msg)).toEqual(['shown']);
  });
});

describe('parseLogLevel (KMS_LOG_LEVEL)', () => {
  it('accepts the four levels in any case, info by default, and refuses anything else naming them', () => {
    expect(parseLogLevel(undefined)).toBe('info');
    expect(parseLogLevel('DEBUG')).toBe('debug');
    expect(() => parseLogLevel('verbose')).toThrow('KMS_LOG_LEVEL must be one of debug, info, warn, error (got verbose)');
  });
});
