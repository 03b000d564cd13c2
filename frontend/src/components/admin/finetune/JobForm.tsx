import { useEffect, useState } from 'react'
import { Play } from 'lucide-react'
import { api, type Dataset, type FinetuneJobDetail, type FinetuneRequest } from '../../../api'
import { useT } from '../../../i18n'
import { MUTED, errorText } from '../parts'

export interface JobFormState {
  dataset: string
  base: string
  epochs: string
  lr: string
  rank: string
  maxSteps: string
  name: string
}

export const EMPTY_JOB: JobFormState = { dataset: '', base: 'smollm2-135m', epochs: '2', lr: '0.0002', rank: '16', maxSteps: '', name: '' }

/** The form as the API's request: empty optional fields are left to the trainer's defaults. */
export function jobRequest(form: JobFormState): FinetuneRequest {
  const body: FinetuneRequest = { dataset: form.dataset.trim(), base: form.base.trim() || 'smollm2-135m' }
  const int = (text: string) => Number.parseInt(text, 10)
  if (Number.isFinite(int(form.epochs))) body.epochs = int(form.epochs)
  if (Number.isFinite(Number.parseFloat(form.lr))) body.lr = Number.parseFloat(form.lr)
  if (Number.isFinite(int(form.rank))) body.rank = int(form.rank)
  if (Number.isFinite(int(form.maxSteps))) body.max_steps = int(form.maxSteps)
  if (form.name.trim()) body.name = form.name.trim()
  return body
}

/** Start a LoRA job on a dataset export (or a JSONL path on the server). The API's refusal
 * (400 bad dataset, 409 a job runs, 503 no training venv) is shown here, in the form. */
export function JobForm({ onStarted }: { onStarted: (job: FinetuneJobDetail) => void }) {
  const t = useT()
  const [form, setForm] = useState<JobFormState>(EMPTY_JOB)
  const [exports, setExports] = useState<Dataset[]>([])
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)

  useEffect(() => {
    api.datasets().then(setExports, () => setExports([]))
  }, [])

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      onStarted(await api.startFinetune(jobRequest(form)))
    } catch (err) {
      setError(errorText(err))
    } finally {
      setBusy(false)
    }
  }

  const field = (key: keyof JobFormState) => ({ value: form[key], onChange: (e: React.ChangeEvent<HTMLInputElement>) => setForm({ ...form, [key]: e.target.value }) })
  return (
    <section aria-labelledby="finetune-start-title" className="card">
      <h2 id="finetune-start-title" className="text-base font-semibold">{t('finetune.start')}</h2>
      <p className={`mb-4 mt-1 text-sm ${MUTED}`}>{t('finetune.startHelp')}</p>
      <form onSubmit={onSubmit} aria-label={t('finetune.start')} className="grid gap-3 sm:grid-cols-2 lg:grid-cols-4 lg:items-end">
        <div className="sm:col-span-2">
          <label htmlFor="finetune-dataset" className="label">{t('finetune.dataset')}</label>
          <input id="finetune-dataset" required list="finetune-exports" placeholder={t('finetune.datasetHint')} {...field('dataset')} className="input font-mono" />
          <datalist id="finetune-exports">
            {exports.map((d) => (
              <option key={d.version} value={d.version}>{t('datasets.sizes', { train: d.counts.train ?? 0, heldout: d.counts.heldout ?? 0 })}</option>
            ))}
          </datalist>
        </div>
        <div>
          <label htmlFor="finetune-base" className="label">{t('finetune.base')}</label>
          <input id="finetune-base" required {...field('base')} className="input" />
        </div>
        <div>
          <label htmlFor="finetune-name" className="label">{t('finetune.name')}</label>
          <input id="finetune-name" pattern={'[a-z0-9][a-z0-9\\-]{0,63}'} placeholder={t('finetune.nameHint')} {...field('name')} className="input" />
        </div>
        <div>
          <label htmlFor="finetune-epochs" className="label">{t('finetune.epochs')}</label>
          <input id="finetune-epochs" type="number" min={1} max={100} step={1} {...field('epochs')} className="input" />
        </div>
        <div>
          <label htmlFor="finetune-lr" className="label">{t('finetune.lr')}</label>
          <input id="finetune-lr" type="number" min={0} max={1} step="any" {...field('lr')} className="input" />
        </div>
        <div>
          <label htmlFor="finetune-rank" className="label">{t('finetune.rank')}</label>
          <input id="finetune-rank" type="number" min={1} max={256} step={1} {...field('rank')} className="input" />
        </div>
        <div>
          <label htmlFor="finetune-steps" className="label">{t('finetune.maxSteps')}</label>
          <input id="finetune-steps" type="number" min={1} step={1} placeholder={t('finetune.maxStepsHint')} {...field('maxSteps')} className="input" />
        </div>
        <button type="submit" disabled={busy} className="btn-primary">
          <Play className="size-4" aria-hidden />
          {busy ? t('common.loading') : t('finetune.startButton')}
        </button>
      </form>
      {error && (
        <p role="alert" data-testid="finetune-error" className="mt-3 break-words text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
    </section>
  )
}
