import type { EvalScores, VersionEvaluation } from '../../../api'
import { useT } from '../../../i18n'
import { Badge, MUTED } from '../parts'
import { useFt } from './messages'

const SPLITS = ['heldout', 'regression'] as const
type EvalSplit = (typeof SPLITS)[number]

const field = (split: EvalSplit, metric: 'keyword' | 'perplexity') => `${split}_${metric}` as keyof EvalScores

export const scoreText = (value: number | null | undefined) => (value === null || value === undefined ? '–' : value.toFixed(2))

/** `value (base)`: a version's score beside the base model's, or the value alone. */
export function scorePair(value: number | null | undefined, base?: number | null): string {
  return base === null || base === undefined || value === null || value === undefined ? scoreText(value) : `${scoreText(value)} (${scoreText(base)})`
}

/** The key scores of one side of an evaluation (keyword and perplexity per scored split),
 * with the base model's in brackets when `base` is given. */
export function EvalScoresView({ scores, base }: { scores: EvalScores; base?: EvalScores }) {
  const t = useT()
  const ft = useFt()
  const splits = SPLITS.filter((split) => scores[field(split, 'keyword')] !== null || scores[field(split, 'perplexity')] !== null)
  if (splits.length === 0) return null
  return (
    <ul aria-label={t('finetune.scores')} className={`text-xs tabular-nums ${MUTED}`}>
      {splits.map((split) => (
        <li key={split} data-eval={split}>
          {ft('scoreLine', {
            split: ft(split),
            keyword: scorePair(scores[field(split, 'keyword')], base?.[field(split, 'keyword')]),
            perplexity: scorePair(scores[field(split, 'perplexity')], base?.[field(split, 'perplexity')]),
          })}
        </li>
      ))}
    </ul>
  )
}

/** The gate's verdict as a badge ("Not evaluated" without one), forced promotions and leaks noted. */
export function GateBadge({ evaluation, forced = false }: { evaluation: VersionEvaluation | null | undefined; forced?: boolean }) {
  const t = useT()
  const ft = useFt()
  if (!evaluation) return <Badge tone="neutral" testId="version-gate">{ft('notEvaluated')}</Badge>
  return (
    <span className="inline-flex flex-wrap items-center gap-1">
      <Badge tone={evaluation.passed ? 'good' : 'bad'} testId="version-gate">
        {evaluation.passed ? t('finetune.gatePassed') : t('finetune.gateFailed')}
        {forced && ` (${ft('forced')})`}
      </Badge>
      {evaluation.leaks ? <span className="text-xs text-red-700 dark:text-red-400">{ft('leakCount', { count: evaluation.leaks })}</span> : null}
    </span>
  )
}
