import { useState } from 'react'
import { Rocket, Undo2 } from 'lucide-react'
import type { GateVerdict } from '../../../api'
import { useT } from '../../../i18n'
import { Badge, MUTED } from '../parts'
import { useVersionActions } from './actions'

const METRICS = ['exact', 'keyword', 'perplexity', 'count'] as const

/** NAME@VERSION → [name, version] (null unless both are there and the version is a number). */
export function parseVersionRef(text: string): [string, string] | null {
  const at = text.trim().lastIndexOf('@')
  if (at <= 0) return null
  const name = text.trim().slice(0, at)
  const version = text.trim().slice(at + 1)
  return /^[0-9]{1,9}$/.test(version) ? [name, version] : null
}

const score = (value: number | undefined) => (value === undefined ? '–' : Number.isInteger(value) ? String(value) : value.toFixed(3))

function VerdictView({ verdict }: { verdict: GateVerdict }) {
  const t = useT()
  const passed = verdict.gate === 'passed'
  return (
    <div className="space-y-2" data-testid="gate-verdict">
      <Badge tone={passed ? 'good' : 'bad'} testId="gate">{passed ? t('finetune.gatePassed') : t('finetune.gateFailed')}</Badge>
      {verdict.reasons.length > 0 && (
        <ul className="list-disc pl-5 text-sm">
          {verdict.reasons.map((reason) => <li key={reason} className="break-words">{reason}</li>)}
        </ul>
      )}
      <div className="overflow-x-auto" tabIndex={0} role="region" aria-label={t('finetune.scores')}>
        <table className="w-full text-left text-sm tabular-nums">
          <thead className={`text-xs ${MUTED}`}>
            <tr>
              <th scope="col" className="px-2 py-1 font-medium">{t('finetune.split')}</th>
              {METRICS.map((m) => <th key={m} scope="col" className="px-2 py-1 text-right font-medium">{m}</th>)}
            </tr>
          </thead>
          <tbody>
            {Object.entries(verdict.scores).flatMap(([split, sides]) =>
              (['base', 'candidate'] as const).map((side) => (
                <tr key={`${split}-${side}`} data-score={`${split}-${side}`}>
                  <th scope="row" className="px-2 py-1 font-normal">{split} · {side === 'base' ? t('finetune.baseSide') : t('finetune.candidate')}</th>
                  {METRICS.map((m) => <td key={m} className="px-2 py-1 text-right">{score(sides[side]?.[m])}</td>)}
                </tr>
              )),
            )}
          </tbody>
        </table>
      </div>
      {verdict.leaks.length > 0 && <p className="text-sm text-red-700 dark:text-red-400">{t('finetune.leaks', { count: verdict.leaks.length })}</p>}
    </div>
  )
}

/** A registered version: run its evaluation gate, promote it to champion (forced after a
 * confirm when the gate failed), deploy it as a model, or roll the champion back. */
export function VersionPanel({ value, onChange, onChanged }: { value: string; onChange: (value: string) => void; onChanged?: () => void }) {
  const t = useT()
  const actions = useVersionActions(onChanged)
  const [verdict, setVerdict] = useState<GateVerdict | null>(null)
  const ref = parseVersionRef(value)
  const busy = actions.busy?.action ?? null

  const evaluate = async () => {
    const found = ref ? await actions.evaluate(...ref) : undefined
    if (found) setVerdict(found)
  }
  const promote = () => (ref ? actions.promote(ref[0], ref[1], verdict?.gate === 'failed') : undefined)
  const rollback = () => (ref ? actions.rollback(ref[0]) : undefined)

  return (
    <section aria-labelledby="finetune-versions-title" className="card space-y-3">
      <h2 id="finetune-versions-title" className="text-base font-semibold">{t('finetune.versions')}</h2>
      <p className={`text-sm ${MUTED}`}>{t('finetune.versionsHelp')}</p>
      <div>
        <label htmlFor="finetune-ref" className="label">{t('finetune.versionRef')}</label>
        <input id="finetune-ref" value={value} placeholder="smollm2-135m-zanthia@1" onChange={(e) => { onChange(e.target.value); setVerdict(null) }} className="input font-mono" aria-invalid={value !== '' && !ref} />
      </div>
      <div className="flex flex-wrap gap-2">
        <button type="button" className="btn-secondary" disabled={!ref || busy !== null} onClick={() => void evaluate()}>
          {busy === 'evaluate' ? t('finetune.evaluating') : t('finetune.evaluate')}
        </button>
        <button type="button" className="btn-secondary" disabled={!ref || busy !== null} onClick={() => void promote()}>{t('finetune.promote')}</button>
        <button type="button" className="btn-primary" disabled={!ref || busy !== null} onClick={() => void actions.deploy(value.trim())}>
          <Rocket className="size-4" aria-hidden />
          {busy === 'deploy' ? t('finetune.deploying') : t('finetune.deploy')}
        </button>
        <button type="button" className="btn-secondary" disabled={!ref || busy !== null} onClick={() => void rollback()}>
          <Undo2 className="size-4" aria-hidden />
          {t('finetune.rollback')}
        </button>
      </div>
      {actions.error && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400">{actions.error}</p>}
      {verdict && <VerdictView verdict={verdict} />}
      {actions.confirm}
    </section>
  )
}
