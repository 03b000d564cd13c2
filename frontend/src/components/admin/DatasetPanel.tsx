import { useEffect, useState } from 'react'
import { Database, Download } from 'lucide-react'
import { api, type Dataset, type DatasetFile, type DatasetRating, type DatasetRequest } from '../../api'
import { useModels } from '../../stores/models'
import { useUi } from '../../stores/ui'
import { useT, type MessageKey } from '../../i18n'
import { saveBlob } from '../../lib/download'
import { Fact, MUTED, errorText } from './parts'

const RATINGS: DatasetRating[] = ['endorsed', 'up', 'down', 'corrected', 'any']
const FILES: DatasetFile[] = ['train.jsonl', 'heldout.jsonl', 'metadata.json']
const COUNTS = ['rated', 'opted_out', 'duplicates', 'too_short', 'train', 'heldout'] as const

interface Form {
  rating: DatasetRating
  model: string
  since: string
  until: string
  usernames: string
  minChars: string
  holdoutPercent: string
}

const EMPTY: Form = { rating: 'endorsed', model: '', since: '', until: '', usernames: '', minChars: '1', holdoutPercent: '10' }

/** The form as the API's request: dates are whole UTC days, `until` inclusive of its day. */
export function datasetRequest(form: Form): DatasetRequest {
  const body: DatasetRequest = { rating: form.rating }
  if (form.model) body.model = form.model
  if (form.since) body.since = `${form.since}T00:00:00Z`
  if (form.until) {
    const next = new Date(`${form.until}T00:00:00Z`)
    next.setUTCDate(next.getUTCDate() + 1)
    body.until = next.toISOString()
  }
  const names = form.usernames.split(/[\s,]+/).filter(Boolean)
  if (names.length) body.usernames = names
  const minChars = Number.parseInt(form.minChars, 10)
  if (Number.isFinite(minChars)) body.min_chars = minChars
  const holdout = Number.parseFloat(form.holdoutPercent)
  if (Number.isFinite(holdout)) body.holdout = holdout / 100
  return body
}

function DatasetResult({ dataset }: { dataset: Dataset }) {
  const t = useT()
  const notify = useUi((s) => s.notify)
  async function download(name: DatasetFile) {
    try {
      saveBlob(await api.datasetFile(dataset.version, name), `chatgate-dataset-${dataset.version}-${name}`)
    } catch (error) {
      notify(errorText(error), 'error')
    }
  }
  return (
    <div className="mt-4 space-y-3 rounded-lg border border-zinc-200 p-3 dark:border-zinc-700" data-testid="dataset-result">
      <dl className="grid gap-3 text-sm sm:grid-cols-2">
        <Fact label={t('datasets.version')}>
          <code className="font-mono">{dataset.version}</code>
        </Fact>
        <Fact label={t('datasets.hash')}>
          <code className="break-all font-mono text-xs">{dataset.hash}</code>
        </Fact>
      </dl>
      <dl className="grid grid-cols-3 gap-3 text-sm sm:grid-cols-6">
        {COUNTS.map((key) => (
          <Fact key={key} label={t(`datasets.count.${key}` as MessageKey)}>
            <span className="tabular-nums" data-count={key}>{(dataset.counts[key] ?? 0).toLocaleString()}</span>
          </Fact>
        ))}
      </dl>
      {Object.keys(dataset.scrubbed).length > 0 && (
        <p className={`text-xs ${MUTED}`}>
          {t('datasets.scrubbed', { items: Object.entries(dataset.scrubbed).map(([kind, n]) => `${kind} ${n}`).join(', ') })}
        </p>
      )}
      <div className="flex flex-wrap gap-2">
        {FILES.map((name) => (
          <button key={name} type="button" className="btn-secondary py-1.5" onClick={() => void download(name)}>
            <Download className="size-4" aria-hidden />
            {name}
          </button>
        ))}
      </div>
    </div>
  )
}

/** Admins: export rated conversations as a training dataset (filters → export → download). */
export function DatasetPanel() {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const models = useModels((s) => s.models)
  const [form, setForm] = useState<Form>(EMPTY)
  const [busy, setBusy] = useState(false)
  const [result, setResult] = useState<Dataset | null>(null)
  const [previous, setPrevious] = useState<Dataset[]>([])

  useEffect(() => {
    api.datasets().then(setPrevious, () => setPrevious([]))
  }, [])

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    try {
      const dataset = await api.createDataset(datasetRequest(form))
      setResult(dataset)
      setPrevious((list) => [dataset, ...list.filter((d) => d.version !== dataset.version)])
    } catch (error) {
      notify(errorText(error), 'error')
    } finally {
      setBusy(false)
    }
  }

  const field = (key: keyof Form) => ({ value: form[key], onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) => setForm({ ...form, [key]: e.target.value }) })
  return (
    <section aria-labelledby="datasets-title" className="card">
      <h2 id="datasets-title" className="flex items-center gap-2 text-base font-semibold">
        <Database className="size-4" aria-hidden />
        {t('datasets.title')}
      </h2>
      <p className={`mb-4 mt-1 text-sm ${MUTED}`}>{t('datasets.help')}</p>
      <form onSubmit={onSubmit} aria-label={t('datasets.title')} className="grid gap-3 sm:grid-cols-2 lg:grid-cols-4 lg:items-end">
        <div>
          <label htmlFor="dataset-rating" className="label">{t('datasets.rating')}</label>
          <select id="dataset-rating" {...field('rating')} className="input">
            {RATINGS.map((r) => (
              <option key={r} value={r}>{t(`datasets.rating.${r}` as MessageKey)}</option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="dataset-model" className="label">{t('usage.model')}</label>
          <select id="dataset-model" {...field('model')} className="input">
            <option value="">–</option>
            {models.map((m) => (
              <option key={m.id} value={m.id}>{m.name || m.id}</option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="dataset-since" className="label">{t('usage.since')}</label>
          <input id="dataset-since" type="date" {...field('since')} className="input" />
        </div>
        <div>
          <label htmlFor="dataset-until" className="label">{t('usage.until')}</label>
          <input id="dataset-until" type="date" {...field('until')} className="input" />
        </div>
        <div>
          <label htmlFor="dataset-users" className="label">{t('datasets.users')}</label>
          <input id="dataset-users" placeholder={t('datasets.usersHint')} {...field('usernames')} className="input" />
        </div>
        <div>
          <label htmlFor="dataset-min" className="label">{t('datasets.minChars')}</label>
          <input id="dataset-min" type="number" min={0} step={1} {...field('minChars')} className="input" />
        </div>
        <div>
          <label htmlFor="dataset-holdout" className="label">{t('datasets.holdout')}</label>
          <input id="dataset-holdout" type="number" min={0} max={50} step={1} {...field('holdoutPercent')} className="input" />
        </div>
        <button type="submit" disabled={busy} className="btn-primary">
          {busy ? t('common.loading') : t('datasets.export')}
        </button>
      </form>
      {result && <DatasetResult dataset={result} />}
      {previous.length > 0 && (
        <details className="mt-4 text-sm">
          <summary className="cursor-pointer">{t('datasets.previous', { count: previous.length })}</summary>
          <ul className="mt-2 space-y-1">
            {previous.map((d) => (
              <li key={d.version}>
                <button type="button" className="font-mono text-xs underline" onClick={() => setResult(d)}>
                  {d.version}
                </button>
                <span className={`ml-2 text-xs ${MUTED}`}>
                  {t('datasets.sizes', { train: d.counts.train ?? 0, heldout: d.counts.heldout ?? 0 })}
                </span>
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  )
}
