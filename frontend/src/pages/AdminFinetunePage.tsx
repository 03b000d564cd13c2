import { useCallback, useState } from 'react'
import { api, type FinetuneJob, type FinetuneJobDetail } from '../api'
import { useAuth } from '../stores/auth'
import { useT } from '../i18n'
import { usePolling } from '../lib/polling'
import { PageShell } from '../components/PageShell'
import { errorText } from '../components/admin/parts'
import { JobForm } from '../components/admin/finetune/JobForm'
import { JobsTable } from '../components/admin/finetune/JobsTable'
import { JobDetail } from '../components/admin/finetune/JobDetail'
import { VersionPanel } from '../components/admin/finetune/VersionPanel'
import { SplitPanel } from '../components/admin/finetune/SplitPanel'

/** Admins: LoRA jobs (start, follow the loss, cancel), the evaluation gate, promotion,
 * deployment, rollback and A/B splits of the versions they register. */
export function AdminFinetunePage({ pollMs = 2000 }: { pollMs?: number }) {
  const t = useT()
  const isAdmin = useAuth((s) => s.identity?.role === 'admin')
  const [jobs, setJobs] = useState<FinetuneJob[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [selected, setSelected] = useState<string | null>(null)
  const [versionRef, setVersionRef] = useState('')

  const load = useCallback(async () => {
    try {
      setJobs(await api.finetuneJobs())
      setError(null)
    } catch (err) {
      setError(errorText(err))
    }
  }, [])
  const running = jobs?.some((job) => job.status === 'running') ?? false
  // Once on open, then every pollMs while a job runs (its row's progress and loss move).
  usePolling(load, running ? pollMs : 60_000, isAdmin)

  const onStarted = useCallback((job: FinetuneJobDetail) => {
    setJobs((list) => [job, ...(list ?? []).filter((j) => j.id !== job.id)])
    setSelected(job.id)
  }, [])
  const onChanged = useCallback(() => void load(), [load])

  if (!isAdmin) {
    return (
      <PageShell title={t('finetune.title')}>
        <p role="alert">{t('admin.forbidden')}</p>
      </PageShell>
    )
  }
  return (
    <PageShell title={t('finetune.title')}>
      <JobForm onStarted={onStarted} />
      {error && <p role="alert" className="text-sm text-red-700 dark:text-red-400">{error}</p>}
      {jobs === null && !error && <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('common.loading')}</p>}
      {jobs && <JobsTable jobs={jobs} selected={selected} onSelect={setSelected} />}
      {selected && <JobDetail key={selected} jobId={selected} pollMs={pollMs} onChanged={onChanged} onUseVersion={setVersionRef} />}
      <VersionPanel value={versionRef} onChange={setVersionRef} />
      <SplitPanel />
    </PageShell>
  )
}
