import { useCallback, useEffect, useState } from 'react'
import { BarChart3, Download } from 'lucide-react'
import { api, type UsageGroup, type UsageGroupBy, type UsageQuery, type UsageRow, type UsageSummary } from '../api'
import { useUi } from '../stores/ui'
import { useAuth } from '../stores/auth'
import { useModels } from '../stores/models'
import { useT } from '../i18n'
import { formatDate } from '../lib/urls'
import { PageShell } from '../components/PageShell'
import { FeedbackRates } from '../components/admin/FeedbackRates'

type State = 'loading' | 'unavailable' | 'ready' | 'error'

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function ms(value: number | null | undefined): string {
  if (value === null || value === undefined) return '–'
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`
}

/** Date inputs give YYYY-MM-DD; the API takes ISO timestamps (UTC). `until` is exclusive: the next day. */
export function toQuery(filters: { since: string; until: string; model: string; username: string }): UsageQuery {
  const query: UsageQuery = {}
  if (filters.since) query.since = `${filters.since}T00:00:00Z`
  if (filters.until) {
    const next = new Date(`${filters.until}T00:00:00Z`)
    next.setUTCDate(next.getUTCDate() + 1)
    query.until = next.toISOString()
  }
  if (filters.model) query.model = filters.model
  if (filters.username.trim()) query.username = filters.username.trim()
  return query
}

function groupLabel(group: UsageGroup): string {
  return String(group.label ?? group.key ?? '–')
}

function Bars({ groups, title }: { groups: UsageGroup[]; title: string }) {
  const max = Math.max(1, ...groups.map((g) => g.total_tokens))
  const shown = groups.slice(0, 30)
  return (
    <figure className="card">
      <figcaption className="mb-3 text-base font-semibold">{title}</figcaption>
      <ul className="space-y-1.5">
        {shown.map((group) => (
          <li key={String(group.key)} className="grid grid-cols-[minmax(0,9rem)_1fr_auto] items-center gap-3 text-sm">
            <span className="truncate text-zinc-600 dark:text-zinc-300" title={groupLabel(group)}>
              {groupLabel(group)}
            </span>
            <span className="h-3 rounded bg-zinc-100 dark:bg-zinc-800" aria-hidden>
              <span className="block h-3 rounded bg-accent-600" style={{ width: `${(group.total_tokens / max) * 100}%` }} />
            </span>
            <span className="text-right font-mono text-xs tabular-nums">{group.total_tokens.toLocaleString()}</span>
          </li>
        ))}
      </ul>
    </figure>
  )
}

export function UsagePage() {
  const t = useT()
  const language = useUi((s) => s.language)
  const notify = useUi((s) => s.notify)
  const isAdmin = useAuth((s) => s.identity?.role === 'admin')
  const models = useModels((s) => s.models)
  const [state, setState] = useState<State>('loading')
  const [error, setError] = useState<string | null>(null)
  const [groupBy, setGroupBy] = useState<UsageGroupBy>('day')
  const [filters, setFilters] = useState({ since: '', until: '', model: '', username: '' })
  const [applied, setApplied] = useState<UsageQuery>({})
  const [summary, setSummary] = useState<UsageSummary | null>(null)
  const [rows, setRows] = useState<UsageRow[]>([])
  const [cursor, setCursor] = useState<string | null>(null)
  const [loadingMore, setLoadingMore] = useState(false)

  const load = useCallback(async (query: UsageQuery, by: UsageGroupBy) => {
    try {
      const [sum, page] = await Promise.all([api.usageSummary(by, query), api.usage({ ...query, limit: 50 })])
      if (sum === null || page === null) {
        setState('unavailable')
        return
      }
      setSummary(sum)
      setRows(page.rows)
      setCursor(page.next_cursor)
      setState('ready')
    } catch (err) {
      setError(errorText(err))
      setState('error')
    }
  }, [])

  useEffect(() => {
    void load(applied, groupBy)
  }, [load, applied, groupBy])

  async function loadMore() {
    if (!cursor) return
    setLoadingMore(true)
    try {
      const page = await api.usage({ ...applied, limit: 50, before: cursor })
      if (page) {
        setRows((list) => [...list, ...page.rows])
        setCursor(page.next_cursor)
      }
    } catch (err) {
      notify(errorText(err), 'error')
    } finally {
      setLoadingMore(false)
    }
  }

  async function onDownload() {
    try {
      const blob = await api.usageCsv(applied)
      const url = URL.createObjectURL(blob)
      const link = document.createElement('a')
      link.href = url
      link.download = `chatgate-usage-${new Date().toISOString().slice(0, 10)}.csv`
      document.body.appendChild(link)
      link.click()
      link.remove()
      setTimeout(() => URL.revokeObjectURL(url), 1000)
    } catch (err) {
      notify(errorText(err), 'error')
    }
  }

  const byLabel = t(`usage.by.${groupBy}`)
  const totals = summary?.totals

  return (
    <PageShell
      title={t('admin.usage')}
      actions={
        state === 'ready' ? (
          <button type="button" onClick={onDownload} className="btn-secondary py-1.5">
            <Download className="size-4" aria-hidden />
            {t('admin.downloadCsv')}
          </button>
        ) : null
      }
    >
      {state === 'loading' && <p className="text-sm text-zinc-500">{t('common.loading')}</p>}
      {state === 'unavailable' && (
        <div className="card flex flex-col items-center py-12 text-center" data-testid="usage-unavailable">
          <BarChart3 className="mb-3 size-10 text-zinc-400" aria-hidden />
          <h2 className="text-base font-semibold">{t('admin.usageUnavailable')}</h2>
          <p className="mt-1 max-w-md text-sm text-zinc-500 dark:text-zinc-400">{t('admin.usageUnavailableHelp')}</p>
        </div>
      )}
      {state === 'error' && (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
      {state === 'ready' && summary && totals && (
        <>
          <p className="text-sm text-zinc-500 dark:text-zinc-400">{isAdmin ? t('usage.all') : t('usage.own')}</p>
          <form
            aria-label={t('usage.filters')}
            className="card grid gap-3 sm:grid-cols-2 lg:grid-cols-5 lg:items-end"
            onSubmit={(event) => {
              event.preventDefault()
              setApplied(toQuery(filters))
            }}
          >
            <div>
              <label htmlFor="usage-group" className="label">
                {t('usage.groupBy')}
              </label>
              <select id="usage-group" value={groupBy} onChange={(e) => setGroupBy(e.target.value as UsageGroupBy)} className="input">
                <option value="day">{t('usage.by.day')}</option>
                <option value="model">{t('usage.by.model')}</option>
                {isAdmin && <option value="user">{t('usage.by.user')}</option>}
                <option value="key">{t('usage.by.key')}</option>
              </select>
            </div>
            <div>
              <label htmlFor="usage-since" className="label">
                {t('usage.since')}
              </label>
              <input id="usage-since" type="date" value={filters.since} onChange={(e) => setFilters({ ...filters, since: e.target.value })} className="input" />
            </div>
            <div>
              <label htmlFor="usage-until" className="label">
                {t('usage.until')}
              </label>
              <input id="usage-until" type="date" value={filters.until} onChange={(e) => setFilters({ ...filters, until: e.target.value })} className="input" />
            </div>
            <div>
              <label htmlFor="usage-model" className="label">
                {t('usage.model')}
              </label>
              <select id="usage-model" value={filters.model} onChange={(e) => setFilters({ ...filters, model: e.target.value })} className="input">
                <option value="">–</option>
                {models.map((m) => (
                  <option key={m.id} value={m.id}>
                    {m.name || m.id}
                  </option>
                ))}
              </select>
            </div>
            {isAdmin && (
              <div>
                <label htmlFor="usage-user" className="label">
                  {t('usage.user')}
                </label>
                <input id="usage-user" value={filters.username} onChange={(e) => setFilters({ ...filters, username: e.target.value })} className="input" />
              </div>
            )}
            <button type="submit" className="btn-primary lg:col-start-5">
              {t('usage.apply')}
            </button>
          </form>

          <section aria-label={t('usage.summary')} className="grid grid-cols-2 gap-3 lg:grid-cols-4">
            {[
              [t('usage.requests'), totals.requests.toLocaleString()],
              [t('usage.totalTokens'), totals.total_tokens.toLocaleString()],
              [t('usage.avgLatency'), ms(totals.avg_latency_ms)],
              [t('usage.errors'), totals.error.toLocaleString()],
            ].map(([label, value]) => (
              <div key={label} className="card p-4">
                <div className="text-xs text-zinc-500 dark:text-zinc-400">{label}</div>
                <div className="mt-1 text-xl font-semibold tabular-nums">{value}</div>
              </div>
            ))}
          </section>

          {summary.groups.length === 0 ? (
            <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('admin.usageEmpty')}</p>
          ) : (
            <>
              <Bars groups={summary.groups} title={t('usage.chart', { group: byLabel })} />
              <div className="card overflow-x-auto p-0" tabIndex={0} role="region" aria-label={`${t('usage.summary')}: ${byLabel}`}>
                <table className="w-full text-left text-sm">
                  <thead className="bg-zinc-50 text-xs uppercase text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
                    <tr>
                      <th scope="col" className="px-3 py-2 font-medium">{byLabel}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.requests')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.ok')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.errors')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.promptTokens')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.completionTokens')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.avgLatency')}</th>
                      <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.avgTtft')}</th>
                    </tr>
                  </thead>
                  <tbody className="divide-y divide-zinc-200 tabular-nums dark:divide-zinc-800">
                    {[...summary.groups, totals].map((group, i) => {
                      const total = i === summary.groups.length
                      return (
                        <tr key={total ? 'total' : String(group.key)} className={total ? 'font-semibold' : undefined}>
                          <th scope="row" className="whitespace-nowrap px-3 py-2 text-left font-medium">
                            {total ? t('usage.total') : groupLabel(group)}
                          </th>
                          <td className="px-3 py-2 text-right">{group.requests.toLocaleString()}</td>
                          <td className="px-3 py-2 text-right">{group.ok.toLocaleString()}</td>
                          <td className="px-3 py-2 text-right">{group.error.toLocaleString()}</td>
                          <td className="px-3 py-2 text-right">{group.prompt_tokens.toLocaleString()}</td>
                          <td className="px-3 py-2 text-right">{group.completion_tokens.toLocaleString()}</td>
                          <td className="px-3 py-2 text-right">{ms(group.avg_latency_ms)}</td>
                          <td className="px-3 py-2 text-right">{ms(group.avg_ttft_ms)}</td>
                        </tr>
                      )
                    })}
                  </tbody>
                </table>
              </div>
            </>
          )}

          {isAdmin && <FeedbackRates query={applied} />}

          <div className="space-y-2">
            <h2 id="usage-recent" className="text-base font-semibold">
              {t('usage.recent')}
            </h2>
            <div className="card overflow-x-auto p-0" tabIndex={0} role="region" aria-labelledby="usage-recent">
              <table className="w-full text-left text-sm">
                <thead className="bg-zinc-50 text-xs uppercase text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
                  <tr>
                    <th scope="col" className="px-3 py-2 font-medium">{t('usage.time')}</th>
                    {isAdmin && <th scope="col" className="px-3 py-2 font-medium">{t('usage.user')}</th>}
                    <th scope="col" className="px-3 py-2 font-medium">{t('usage.route')}</th>
                    <th scope="col" className="px-3 py-2 font-medium">{t('usage.model')}</th>
                    <th scope="col" className="px-3 py-2 font-medium">{t('usage.status')}</th>
                    <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.tokens')}</th>
                    <th scope="col" className="px-3 py-2 text-right font-medium">{t('usage.latency')}</th>
                  </tr>
                </thead>
                <tbody className="divide-y divide-zinc-200 tabular-nums dark:divide-zinc-800">
                  {rows.map((row) => (
                    <tr key={row.id}>
                      <td className="whitespace-nowrap px-3 py-2">{formatDate(row.created_at, language)}</td>
                      {isAdmin && <td className="px-3 py-2">{row.username ?? '–'}</td>}
                      <td className="px-3 py-2 font-mono text-xs">{row.route}</td>
                      <td className="px-3 py-2">{row.model ?? '–'}</td>
                      <td className="px-3 py-2">
                        <span className={`rounded-full px-2 py-0.5 text-xs font-medium ${row.status === 'ok' ? 'bg-accent-50 text-accent-700 dark:bg-accent-700/30 dark:text-accent-500' : 'bg-amber-50 text-amber-800 dark:bg-amber-950 dark:text-amber-300'}`}>
                          {row.status}
                        </span>
                      </td>
                      <td className="px-3 py-2 text-right">
                        {row.prompt_tokens.toLocaleString()} / {row.completion_tokens.toLocaleString()}
                      </td>
                      <td className="whitespace-nowrap px-3 py-2 text-right">{ms(row.latency_ms)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            {cursor && (
              <button type="button" onClick={() => void loadMore()} disabled={loadingMore} className="btn-secondary">
                {loadingMore ? t('common.loading') : t('sidebar.loadMore')}
              </button>
            )}
          </div>
        </>
      )}
    </PageShell>
  )
}
