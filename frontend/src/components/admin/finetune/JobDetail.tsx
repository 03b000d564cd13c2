import { useCallback, useEffect, useRef, useState } from 'react'
import { Square } from 'lucide-react'
import { api, type FinetuneJobDetail } from '../../../api'
import { useT, type MessageKey } from '../../../i18n'
import { usePolling } from '../../../lib/polling'
import { Badge, Fact, MUTED, errorText } from '../parts'
import { LossChart } from './LossChart'
import { JOB_TONE, versionRef } from './status'

const num = (value: number | null, digits: number) => (value === null ? '–' : value.toFixed(digits))

/** One job: facts, the live loss curve (polled while it runs), cancel, and its version. */
export function JobDetail({ jobId, pollMs, onChanged, onUseVersion }: {
  jobId: string
  pollMs: number
  onChanged: () => void
  onUseVersion: (ref: string) => void
}) {
  const t = useT()
  const [job, setJob] = useState<FinetuneJobDetail | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [cancelling, setCancelling] = useState(false)
  const lastStatus = useRef<string | null>(null)

  const load = useCallback(async () => {
    try {
      const found = await api.finetuneJob(jobId)
      if (lastStatus.current && lastStatus.current !== found.status) onChanged()
      lastStatus.current = found.status
      setJob(found)
      setError(null)
    } catch (err) {
      setError(errorText(err))
    }
  }, [jobId, onChanged])

  useEffect(() => {
    setJob(null)
    lastStatus.current = null
    void load()
  }, [load])
  usePolling(load, pollMs, job?.status === 'running')

  async function cancel() {
    setCancelling(true)
    try {
      setJob(await api.cancelFinetune(jobId))
      onChanged()
    } catch (err) {
      setError(errorText(err))
    } finally {
      setCancelling(false)
    }
  }

  const ref = job ? versionRef(job) : null
  return (
    <section aria-labelledby="finetune-detail-title" className="card space-y-4" data-testid="finetune-detail">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h2 id="finetune-detail-title" className="text-base font-semibold">
          {t('finetune.detail', { id: jobId.slice(0, 12) })}
        </h2>
        {job && <Badge tone={JOB_TONE[job.status]} testId="detail-status">{t(`finetune.status.${job.status}` as MessageKey)}</Badge>}
      </div>
      {error && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400">{error}</p>}
      {!job && !error && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {job && (
        <>
          <dl className="grid gap-3 text-sm sm:grid-cols-3 lg:grid-cols-6">
            <Fact label={t('finetune.progress')}>
              <span className="tabular-nums">{job.total_steps ? t('finetune.steps', { step: job.step, total: job.total_steps }) : job.step}</span>
            </Fact>
            <Fact label={t('finetune.epoch')}>{job.epoch ?? '–'}</Fact>
            <Fact label={t('finetune.loss')}><span className="tabular-nums">{num(job.loss, 4)}</span></Fact>
            <Fact label={t('finetune.lr')}><span className="tabular-nums">{job.learning_rate === null ? '–' : job.learning_rate.toExponential(2)}</span></Fact>
            <Fact label={t('finetune.speed')}><span className="tabular-nums">{num(job.tokens_per_second, 0)}</span></Fact>
            <Fact label={t('finetune.owner')}>{job.owner ?? '–'}</Fact>
          </dl>
          <LossChart curve={job.curve} />
          {job.error && <p role="alert" className="whitespace-pre-wrap break-words text-sm text-red-700 dark:text-red-400">{job.error}</p>}
          <p className={`break-all text-xs ${MUTED}`}>{t('finetune.logFile', { path: job.log_file })}</p>
          <div className="flex flex-wrap gap-2">
            {job.status === 'running' && (
              <button type="button" className="btn-danger" disabled={cancelling || job.cancel_requested} onClick={() => void cancel()}>
                <Square className="size-4" aria-hidden />
                {job.cancel_requested ? t('finetune.cancelling') : t('finetune.cancel')}
              </button>
            )}
            {ref && (
              <button type="button" className="btn-secondary" onClick={() => onUseVersion(ref)}>
                {t('finetune.useVersion', { ref })}
              </button>
            )}
          </div>
        </>
      )}
    </section>
  )
}
