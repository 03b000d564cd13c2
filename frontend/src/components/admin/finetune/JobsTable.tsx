import type { FinetuneJob } from '../../../api'
import { useT, type MessageKey } from '../../../i18n'
import { Badge, MUTED } from '../parts'
import { JOB_TONE, jobProgress, versionRef } from './status'

function Progress({ job }: { job: FinetuneJob }) {
  const t = useT()
  const pct = jobProgress(job)
  const text = job.total_steps ? t('finetune.steps', { step: job.step, total: job.total_steps }) : String(job.step)
  return (
    <div className="min-w-28">
      <div
        role="progressbar"
        aria-label={t('finetune.progressOf', { id: job.id })}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct ?? undefined}
        aria-valuetext={text}
        className="h-1.5 overflow-hidden rounded-full bg-zinc-200 dark:bg-zinc-700"
      >
        <div className="h-full bg-accent-600" style={{ width: `${pct ?? 0}%` }} />
      </div>
      <span className={`text-xs tabular-nums ${MUTED}`}>{text}</span>
    </div>
  )
}

/** Recent jobs, newest first; "Details" opens one (its curve, cancel, the version it made). */
export function JobsTable({ jobs, selected, onSelect }: { jobs: FinetuneJob[]; selected: string | null; onSelect: (id: string) => void }) {
  const t = useT()
  return (
    <section aria-labelledby="finetune-jobs-title" className="space-y-2">
      <h2 id="finetune-jobs-title" className="text-base font-semibold">{t('finetune.jobs')}</h2>
      {jobs.length === 0 ? (
        <p className={`text-sm ${MUTED}`} data-testid="finetune-no-jobs">{t('finetune.noJobs')}</p>
      ) : (
        <div className="card overflow-x-auto p-0" tabIndex={0} role="region" aria-labelledby="finetune-jobs-title">
          <table className="w-full text-left text-sm">
            <thead className="bg-zinc-50 text-xs uppercase text-zinc-500 dark:bg-zinc-800 dark:text-zinc-400">
              <tr>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.job')}</th>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.status')}</th>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.progress')}</th>
                <th scope="col" className="px-3 py-2 text-right font-medium">{t('finetune.loss')}</th>
                <th scope="col" className="px-3 py-2 font-medium">{t('finetune.version')}</th>
                <th scope="col" className="px-3 py-2"><span className="sr-only">{t('finetune.details')}</span></th>
              </tr>
            </thead>
            <tbody className="divide-y divide-zinc-200 dark:divide-zinc-800">
              {jobs.map((job) => (
                <tr key={job.id} data-job={job.id} className={job.id === selected ? 'bg-accent-50 dark:bg-zinc-800' : undefined}>
                  <th scope="row" className="px-3 py-2 text-left font-normal">
                    <code className="font-mono text-xs">{job.id.slice(0, 12)}</code>
                    <div className={`break-all text-xs ${MUTED}`}>{job.base} · {job.dataset}</div>
                  </th>
                  <td className="px-3 py-2">
                    <Badge tone={JOB_TONE[job.status]} testId="job-status">{t(`finetune.status.${job.status}` as MessageKey)}</Badge>
                  </td>
                  <td className="px-3 py-2"><Progress job={job} /></td>
                  <td className="px-3 py-2 text-right tabular-nums">{job.loss === null ? '–' : job.loss.toFixed(4)}</td>
                  <td className="px-3 py-2 font-mono text-xs">{versionRef(job) ?? '–'}</td>
                  <td className="px-3 py-2 text-right">
                    <button type="button" className="btn-secondary py-1" aria-pressed={job.id === selected} onClick={() => onSelect(job.id)}>
                      {t('finetune.details')}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  )
}
