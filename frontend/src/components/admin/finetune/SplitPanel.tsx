import { useEffect, useState } from 'react'
import { Split } from 'lucide-react'
import { api, type Deployment, type EvalScores, type ModelRates, type ModelSplit, type VersionEvaluation } from '../../../api'
import { useModels } from '../../../stores/models'
import { useT } from '../../../i18n'
import { MUTED, errorText } from '../parts'
import { EvalScoresView, GateBadge } from './EvalScores'

const rate = (value: number | null) => (value === null ? '–' : `${Math.round(value * 100)} %`)

/** One side of a split: its feedback rates and, when the challenger was evaluated, that
 * side's scores from the gate (the base model's, or the challenger's with its verdict). */
function SideCell({ rates, scores, verdict }: { rates: ModelRates | undefined; scores?: EvalScores; verdict?: VersionEvaluation }) {
  const t = useT()
  return (
    <td className="px-3 py-2 tabular-nums">
      {rates ? (
        <>
          <span className="font-medium">{rate(rates.up_rate)}</span>
          <span className={`ml-1 text-xs ${MUTED}`}>{t('finetune.ratesDetail', { rated: rates.rated, answers: rates.answers, down: rate(rates.down_rate) })}</span>
        </>
      ) : (
        '–'
      )}
      {verdict && <div className="mt-1"><GateBadge evaluation={verdict} /></div>}
      {scores && <EvalScoresView scores={scores} />}
    </td>
  )
}

/** A/B split of a base model's web chats to a deployed challenger, with both sides'
 * feedback rates (last 30 days) and the gate's evaluation scores side by side.
 * `deployments` offers the challengers; a new `refreshKey` reloads the splits. */
export function SplitPanel({ deployments, refreshKey = 0 }: { deployments: Deployment[]; refreshKey?: number }) {
  const t = useT()
  const models = useModels((s) => s.models)
  const [splits, setSplits] = useState<ModelSplit[]>([])
  const [form, setForm] = useState({ base: '', to: '', percent: '10' })
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string | null>(null)

  useEffect(() => {
    api.splits().then(setSplits, (err: unknown) => setError(errorText(err)))
  }, [refreshKey]) // again after a deploy, an undeploy or a rollback: a split may have ended

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      setSplits(await api.setSplit(form.base.trim(), form.to.trim(), Number.parseInt(form.percent, 10) || 0))
    } catch (err) {
      setError(errorText(err))
    } finally {
      setBusy(false)
    }
  }

  const field = (key: keyof typeof form) => ({ value: form[key], onChange: (e: React.ChangeEvent<HTMLInputElement>) => setForm({ ...form, [key]: e.target.value }) })
  return (
    <section aria-labelledby="finetune-splits-title" className="card space-y-3">
      <h2 id="finetune-splits-title" className="flex items-center gap-2 text-base font-semibold">
        <Split className="size-4" aria-hidden />
        {t('finetune.splits')}
      </h2>
      <p className={`text-sm ${MUTED}`}>{t('finetune.splitsHelp')}</p>
      <form onSubmit={onSubmit} aria-label={t('finetune.splits')} className="grid gap-3 sm:grid-cols-2 lg:grid-cols-4 lg:items-end">
        <div>
          <label htmlFor="split-base" className="label">{t('finetune.splitBase')}</label>
          <input id="split-base" required list="split-bases" {...field('base')} className="input" />
          <datalist id="split-bases">
            {models.map((m) => <option key={m.id} value={m.id} />)}
          </datalist>
        </div>
        <div>
          <label htmlFor="split-to" className="label">{t('finetune.challenger')}</label>
          <input id="split-to" required list="split-deployed" {...field('to')} className="input font-mono" />
          <datalist id="split-deployed">
            {deployments.map((d) => <option key={d.model_id} value={d.model_id} />)}
          </datalist>
        </div>
        <div>
          <label htmlFor="split-percent" className="label">{t('finetune.percent')}</label>
          <input id="split-percent" type="number" min={0} max={100} step={1} required {...field('percent')} className="input" />
        </div>
        <button type="submit" disabled={busy} className="btn-primary">{t('finetune.setSplit')}</button>
      </form>
      {error && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400">{error}</p>}
      {splits.length === 0 ? (
        <p className={`text-sm ${MUTED}`} data-testid="no-splits">{t('finetune.noSplits')}</p>
      ) : (
        <div className="overflow-x-auto" tabIndex={0} role="region" aria-labelledby="finetune-splits-title">
          <table className="w-full text-left text-sm">
            <thead className={`text-xs uppercase ${MUTED}`}>
              <tr>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.split')}</th>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.baseRates')}</th>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.challengerRates')}</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-zinc-200 dark:divide-zinc-800">
              {splits.map((s) => (
                <tr key={s.base} data-split={s.base}>
                  <th scope="row" className="px-3 py-2 text-left font-normal">
                    <span className="break-all">{t('finetune.splitRow', { base: s.base, to: s.to, percent: s.percent })}</span>
                  </th>
                  <SideCell rates={s.rates.find((r) => r.model === s.base) ?? s.rates[0]} scores={s.evaluation?.base} />
                  <SideCell rates={s.rates.find((r) => r.model === s.to) ?? s.rates[1]} scores={s.evaluation?.candidate} verdict={s.evaluation ?? undefined} />
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}
