import { Copy } from 'lucide-react'
import type { CompatReport } from '../api/types'
import { TONE_CLASS, TONE_DOT, VERDICT_TONE, gib, shellLine } from '../lib/admin'
import { copyText } from '../lib/clipboard'
import { useUi } from '../stores/ui'
import { useT, type Translate } from '../i18n'

export function verdictLabel(t: Translate, report: CompatReport): string {
  if (report.verdict === 'fits_with_tp') return t('verdict.fits_with_tp', { tp: report.tensor_parallel_size ?? report.gpus })
  return t(`verdict.${report.verdict}`)
}

/** A compatibility verdict: coloured label and message, with the numbers behind it on demand. */
export function VerdictView({ report, open = false }: { report: CompatReport; open?: boolean }) {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const tone = VERDICT_TONE[report.verdict] ?? 'neutral'
  const args = shellLine(report.suggested_args)
  const gpus = Math.max(report.gpus, 0)
  const usableTotal = report.usable_bytes_per_gpu !== null && gpus > 0 ? report.usable_bytes_per_gpu * gpus : null
  const row = (label: string, value: string) => (
    <>
      <dt className="text-zinc-600 dark:text-zinc-300">{label}</dt>
      <dd className="pl-4 text-right tabular-nums">{value}</dd>
    </>
  )
  const gibText = (bytes: number | null) => (bytes === null ? '–' : t('verdict.gib', { value: gib(bytes) }))

  return (
    <div className={`rounded-lg px-3 py-2 text-sm ${TONE_CLASS[tone]}`} data-verdict={report.verdict}>
      <p className="flex flex-wrap items-center gap-x-2 gap-y-0.5">
        <span className={`size-2 shrink-0 rounded-full ${TONE_DOT[tone]}`} aria-hidden />
        <span className="font-semibold">{verdictLabel(t, report)}</span>
        {report.message && <span className="min-w-0 break-words">{report.message}</span>}
      </p>
      <details className="mt-1 group" open={open}>
        <summary className="cursor-pointer select-none text-xs font-medium underline-offset-2 hover:underline">{t('verdict.details')}</summary>
        <dl className="mt-2 grid grid-cols-[1fr_auto] gap-y-1 text-xs">
          {row(t('verdict.weights'), gibText(report.weights_bytes))}
          {row(t('verdict.kvCache', { tokens: report.max_model_len.toLocaleString() }), gibText(report.kv_cache_bytes))}
          {row(t('verdict.overhead'), gibText(report.overhead_bytes))}
          <dt className="border-t border-current/20 pt-1 font-semibold">{t('verdict.required')}</dt>
          <dd className="border-t border-current/20 pl-4 pt-1 text-right font-semibold tabular-nums" data-testid="verdict-required">
            {gibText(report.required_bytes)}
          </dd>
          {row(t('verdict.usable'), gibText(report.usable_bytes_per_gpu))}
          {gpus > 1 && row(t('verdict.usableTotal', { count: gpus }), gibText(usableTotal))}
          {row(t('verdict.utilization'), `${Math.round(report.gpu_memory_utilization * 100)}%`)}
        </dl>
        {report.suggested_args.length > 0 && (
          <div className="mt-2">
            <p className="mb-1 text-xs font-medium">{t('verdict.suggestedArgs')}</p>
            <div className="flex items-start gap-1 rounded-md bg-white/70 p-1.5 dark:bg-black/30">
              <code className="min-w-0 flex-1 break-all font-mono text-xs" data-testid="suggested-args">
                {args}
              </code>
              <button
                type="button"
                aria-label={t('verdict.copyArgs')}
                title={t('verdict.copyArgs')}
                onClick={async () => {
                  const ok = await copyText(args)
                  notify(ok ? t('common.copied') : t('common.error'), ok ? 'info' : 'error')
                }}
                className="shrink-0 rounded p-1 hover:bg-black/10 dark:hover:bg-white/10"
              >
                <Copy className="size-3.5" aria-hidden />
              </button>
            </div>
          </div>
        )}
        {report.alternatives.length > 0 && (
          <p className="mt-2 text-xs">
            <span className="font-medium">{t('verdict.alternatives')}:</span> <span className="font-mono">{report.alternatives.join(', ')}</span>
          </p>
        )}
      </details>
    </div>
  )
}
