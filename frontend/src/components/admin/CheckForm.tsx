import { useId, useState } from 'react'
import { api, type AdminModel, type CompatReport } from '../../api'
import { useT } from '../../i18n'
import { VerdictView } from '../Verdict'
import { errorText, MUTED } from './parts'

/** The compatibility check of a profile for hardware other than this machine's. */
export function CheckForm({ models }: { models: AdminModel[] }) {
  const t = useT()
  const id = useId()
  const [profile, setProfile] = useState(models[0]?.id ?? '')
  const [gpus, setGpus] = useState('2')
  const [memory, setMemory] = useState('24GiB')
  const [report, setReport] = useState<CompatReport | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const chosen = models.find((m) => m.id === profile) ?? models[0]

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    if (!chosen) return
    setBusy(true)
    setError(null)
    try {
      setReport(await api.checkModel(chosen.id, { gpus: gpus.trim() ? Number(gpus) : null, gpuMemory: memory }))
    } catch (err) {
      setReport(null)
      setError(errorText(err))
    } finally {
      setBusy(false)
    }
  }

  if (models.length === 0) return null
  const reported = report ? models.find((m) => m.id === report.profile_id) : undefined
  return (
    <section aria-labelledby={`${id}-title`} className="card">
      <h2 id={`${id}-title`} className="text-base font-semibold">
        {t('check.title')}
      </h2>
      <p className={`break-keep mb-3 text-sm ${MUTED}`}>{t('check.help')}</p>
      <form onSubmit={onSubmit} className="grid gap-3 sm:grid-cols-[minmax(0,2fr)_minmax(0,1fr)_minmax(0,1fr)_auto] sm:items-end">
        <div className="min-w-0">
          <label htmlFor={`${id}-profile`} className="label">
            {t('check.profile')}
          </label>
          <select id={`${id}-profile`} value={chosen?.id ?? ''} onChange={(e) => setProfile(e.target.value)} className="input">
            {models.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name || m.id}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor={`${id}-gpus`} className="label">
            {t('check.gpus')}
          </label>
          <input id={`${id}-gpus`} type="number" min={1} max={64} step={1} inputMode="numeric" value={gpus} onChange={(e) => setGpus(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor={`${id}-memory`} className="label">
            {t('check.memory')}
          </label>
          <input
            id={`${id}-memory`}
            value={memory}
            onChange={(e) => setMemory(e.target.value)}
            placeholder={t('check.memoryHint')}
            aria-describedby={`${id}-memory-hint`}
            autoComplete="off"
            spellCheck={false}
            className="input"
          />
          <span id={`${id}-memory-hint`} className="sr-only">
            {t('check.memoryHint')}
          </span>
        </div>
        <button type="submit" disabled={busy} className="btn-primary">
          {t('check.submit')}
        </button>
      </form>
      {error && (
        <p role="alert" className="mt-3 rounded-lg bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">
          {error}
        </p>
      )}
      {report && (
        <div className="mt-4" data-testid="check-result">
          <h3 className="mb-2 text-sm font-medium">{t('check.result', { name: reported?.name || report.profile_id })}</h3>
          <VerdictView report={report} open />
        </div>
      )}
    </section>
  )
}
