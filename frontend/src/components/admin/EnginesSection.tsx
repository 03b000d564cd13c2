import { type EngineInfo, type PoolInfo } from '../../api'
import { useT } from '../../i18n'
import { type Tone } from '../../lib/admin'
import { Badge, MUTED, Fact } from './parts'

const ENGINE_TONE: Record<EngineInfo['state'], Tone> = {
  ready: 'good',
  attached: 'good',
  starting: 'warn',
  restarting: 'warn',
  failed: 'bad',
  stopped: 'neutral',
}

const CIRCUIT_TONE: Record<EngineInfo['circuit'], Tone> = { closed: 'neutral', half_open: 'warn', open: 'bad' }

function metric(value: number | null | undefined): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : String(Math.round(value))
}

const PRIORITIES = ['interactive', 'api', 'batch'] as const

/** Per model: slots busy of capacity, and who waits in the gateway's fair queue. */
function PoolsList({ pools }: { pools: PoolInfo[] }) {
  const t = useT()
  if (pools.length === 0) return null
  return (
    <ul className="mb-3 space-y-1" aria-label={t('engines.pools')}>
      {pools.map((pool) => {
        const classes = PRIORITIES.filter((priority) => (pool.waiting_by_priority[priority] ?? 0) > 0)
          .map((priority) => `${t(`engines.priority.${priority}`)} ${pool.waiting_by_priority[priority]}`)
          .join(', ')
        return (
          <li key={pool.model_id} data-pool={pool.model_id} className="text-sm">
            <span className="font-mono text-xs">{pool.model_id}</span>
            {': '}
            <span className="tabular-nums">{t('engines.slots', { busy: pool.busy, capacity: pool.capacity })}</span>
            {' · '}
            <span className="tabular-nums">
              {pool.waiting === 0
                ? t('engines.queueEmpty')
                : t('engines.queue', { count: pool.waiting, seconds: Math.round(pool.oldest_wait_seconds) })}
            </span>
            {classes && <span className={MUTED}> ({classes})</span>}
          </li>
        )
      })}
    </ul>
  )
}

export function EnginesSection({
  engines,
  pools = [],
  error,
}: {
  engines: EngineInfo[] | null
  pools?: PoolInfo[]
  error: string | null
}) {
  const t = useT()
  return (
    <section aria-labelledby="engines-title" className="card">
      <h2 id="engines-title" className="text-base font-semibold">
        {t('engines.title')}
      </h2>
      <p className={`break-keep mb-3 text-sm ${MUTED}`}>{t('engines.help')}</p>
      {error && (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
      <PoolsList pools={pools} />
      {!engines && !error && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {engines && engines.length === 0 && <p className={`text-sm ${MUTED}`}>{t('engines.empty')}</p>}
      {engines && engines.length > 0 && (
        <ul className="divide-y divide-zinc-200 dark:divide-zinc-800">
          {engines.map((engine) => {
            const kv = engine.metrics?.kv_cache_usage
            return (
              <li key={engine.name} className="py-3 first:pt-0 last:pb-0" data-engine={engine.name}>
                <div className="flex flex-wrap items-center gap-2">
                  <span className="min-w-0 break-all font-mono text-sm font-medium">{engine.name}</span>
                  <Badge tone={ENGINE_TONE[engine.state] ?? 'neutral'}>{t(`engines.state.${engine.state}`)}</Badge>
                  <Badge tone={engine.healthy ? 'good' : 'bad'}>{engine.healthy ? t('models.healthy') : t('models.unhealthy')}</Badge>
                </div>
                <p className={`break-all font-mono text-xs ${MUTED}`}>{engine.base_url}</p>
                <dl className="mt-2 grid grid-cols-2 gap-x-4 gap-y-2 text-sm sm:grid-cols-3 lg:grid-cols-6">
                  <Fact label={t('engines.model')}>
                    <span className="break-all font-mono text-xs">{engine.model_id}</span>
                  </Fact>
                  <Fact label={t('engines.kind')}>{t(`engines.kind.${engine.kind}`)}</Fact>
                  <Fact label={t('engines.circuit')}>
                    <Badge tone={CIRCUIT_TONE[engine.circuit] ?? 'neutral'}>{t(`engines.circuit.${engine.circuit}`)}</Badge>
                  </Fact>
                  <Fact label={t('engines.outstanding')}>
                    <span className="tabular-nums">
                      {engine.outstanding}
                      {engine.capacity ? ` / ${engine.capacity}` : ''}
                    </span>
                  </Fact>
                  <Fact label={t('engines.load')}>
                    <span className="tabular-nums">
                      {metric(engine.metrics?.requests_running)} / {metric(engine.metrics?.requests_waiting)}
                    </span>
                  </Fact>
                  <Fact label={t('engines.kvCache')}>
                    <span className="tabular-nums">{kv === null || kv === undefined ? '–' : `${Math.round(kv * 100)}%`}</span>
                  </Fact>
                </dl>
                {engine.failure ? (
                  <div
                    role="alert"
                    data-testid="engine-failure"
                    className="mt-2 rounded border border-red-300 bg-red-50 p-2 text-sm text-red-800 dark:border-red-800 dark:bg-red-950 dark:text-red-300"
                  >
                    <p className="font-medium">{t('engines.failed')}</p>
                    <p className="whitespace-pre-wrap break-words text-xs">{engine.failure}</p>
                  </div>
                ) : (
                  engine.last_error && (
                    <p className="mt-2 break-words text-xs text-red-700 dark:text-red-400">
                      <span className="font-medium">{t('engines.lastError')}:</span> {engine.last_error}
                    </p>
                  )
                )}
                {engine.wedged_restarts > 0 && (
                  <p className={`mt-1 text-xs ${MUTED}`}>
                    {t('engines.wedgedRestarts', { count: engine.wedged_restarts })}
                  </p>
                )}
              </li>
            )
          })}
        </ul>
      )}
    </section>
  )
}
