import type { CurvePoint } from '../../../api'
import { useT } from '../../../i18n'

export const CHART_WIDTH = 480
export const CHART_HEIGHT = 160
const PAD = 8

/** SVG polyline points of a loss curve scaled into the chart (lower loss: lower on screen is
 * the usual reading, so the y axis is flipped); a flat curve sits in the middle. */
export function curvePoints(curve: readonly CurvePoint[], width = CHART_WIDTH, height = CHART_HEIGHT): string {
  if (curve.length === 0) return ''
  const steps = curve.map((p) => p.step)
  const losses = curve.map((p) => p.loss)
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)]
  const [y0, y1] = [Math.min(...losses), Math.max(...losses)]
  const x = (step: number) => (x1 === x0 ? width / 2 : PAD + ((step - x0) / (x1 - x0)) * (width - 2 * PAD))
  const y = (loss: number) => (y1 === y0 ? height / 2 : PAD + ((y1 - loss) / (y1 - y0)) * (height - 2 * PAD))
  return curve.map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ')
}

const fmt = (loss: number) => (Math.abs(loss) >= 100 ? loss.toFixed(0) : loss.toPrecision(3))

/** The training loss per step as a small line chart (no chart library: one polyline). */
export function LossChart({ curve }: { curve: readonly CurvePoint[] }) {
  const t = useT()
  if (curve.length === 0) {
    return <p className="text-sm text-zinc-500 dark:text-zinc-400" data-testid="loss-empty">{t('finetune.noCurve')}</p>
  }
  const first = curve[0] as CurvePoint
  const last = curve[curve.length - 1] as CurvePoint
  const losses = curve.map((p) => p.loss)
  const label = t('finetune.curveLabel', { points: curve.length, first: fmt(first.loss), last: fmt(last.loss), step: last.step })
  return (
    <figure className="space-y-1" data-testid="loss-chart">
      <svg
        role="img"
        aria-label={label}
        viewBox={`0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`}
        className="h-40 w-full rounded border border-zinc-200 bg-white dark:border-zinc-700 dark:bg-zinc-900"
        preserveAspectRatio="none"
      >
        <polyline points={curvePoints(curve)} fill="none" stroke="currentColor" strokeWidth={2} vectorEffect="non-scaling-stroke" className="text-accent-700 dark:text-accent-500" />
      </svg>
      <figcaption className="flex justify-between text-xs tabular-nums text-zinc-500 dark:text-zinc-400">
        <span>{t('finetune.stepValue', { step: first.step })}</span>
        <span>{t('finetune.lossRange', { min: fmt(Math.min(...losses)), max: fmt(Math.max(...losses)) })}</span>
        <span>{t('finetune.stepValue', { step: last.step })}</span>
      </figcaption>
    </figure>
  )
}
