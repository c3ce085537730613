import { ApiError } from '../core/errors';
import type { ApiParams } from './request';
import { InvalidValue, type CommandSpec, type Infer, type Params, type RawValue } from '../commands/define';

const MAP_KEY = /^([a-z0-9_]+)\[(\d+)\]\.(.+)$/i;

/** Collects `name[i].field=value` parameters into per-name index maps; a malformed one is a 430. */
function collectMaps(lower: ReadonlyMap<string, string>): Map<string, Map<number, Record<string, string>>> {
  const maps = new Map<string, Map<number, Record<string, string>>>();
  for (const [key, value] of lower) {
    if (!key.includes('[')) continue;
    const m = MAP_KEY.exec(key);
    if (!m) throw new ApiError(430, `Unable to decode parameter ${key}; if the parameter is a map, use the format ${key.split('[')[0]}[0].key=value`, 9999);
    const [, name, index, field] = m;
    const byIndex = maps.get(name) ?? new Map<number, Record<string, string>>();
    const group = byIndex.get(Number(index)) ?? {};
    group[field] = value;
    byIndex.set(Number(index), group);
    maps.set(name, byIndex);
  }
  return maps;
}

/**
 * Validates and coerces parameters in CloudStack's order (ParamProcessWorker): required, then
 * type, then length and allowed values. Unknown parameters are ignored, as CloudStack does.
 */
export function parseParams<P extends Params>(spec: CommandSpec<P>, params: ApiParams): Infer<P> {
  const cmd = spec.name.toLowerCase();
  const maps = collectMaps(params.lower);
  const out: Record<string, unknown> = {};
  for (const [name, p] of Object.entries(spec.params)) {
    let raw: RawValue | undefined = p.type === 'map' ? maps.get(name) : params.lower.get(name);
    if (raw === '' && p.type !== 'string') raw = undefined;
    if (raw === undefined) {
      if (p.required) throw new ApiError(431, `Unable to execute API command ${cmd} due to missing parameter ${name}`, 4350);
      out[name] = p.default;
      continue;
    }
    if (typeof raw === 'string' && p.type !== 'list' && raw.length > p.length) {
      throw new ApiError(431, `Unable to execute API command ${cmd} due to invalid value. Value greater than max allowed length ${p.length} for param: ${name}`, 4350);
    }
    let value: unknown;
    try {
      value = p.parse(raw);
    } catch (e) {
      if (!(e instanceof InvalidValue)) throw e;
      const shown = typeof raw === 'string' ? raw : '(map)';
      throw new ApiError(431, `Unable to execute API command ${cmd} due to invalid value ${shown} for parameter ${name}: ${e.message}`, 4350);
    }
    if (p.allowed && !(p.allowed as readonly unknown[]).includes(value)) {
      throw new ApiError(431, `Invalid value ${String(value)} for parameter ${name}; allowed values are ${p.allowed.join(', ')}`, 4350);
    }
    if (p.required && p.type === 'string' && String(value).trim() === '') {
      throw new ApiError(431, `Unable to execute API command ${cmd} due to missing parameter ${name}`, 4350);
    }
    out[name] = value;
  }
  return out as Infer<P>;
}
