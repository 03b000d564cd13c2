import { Square } from 'lucide-react'
import type { Deployment } from '../../../api'
import { useT } from '../../../i18n'
import { MUTED } from '../parts'
import { useVersionActions } from './actions'
import { useFt } from './messages'

/** The versions served as models, each with Undeploy; `onChanged` reloads the list. */
export function DeploymentsPanel({ deployments, onChanged }: { deployments: Deployment[] | null; onChanged: () => void }) {
  const t = useT()
  const ft = useFt()
  const actions = useVersionActions(onChanged)
  return (
    <section aria-labelledby="finetune-deployments-title" className="card space-y-3" data-testid="deployments">
      <h2 id="finetune-deployments-title" className="text-base font-semibold">{ft('deployments')}</h2>
      <p className={`text-sm ${MUTED}`}>{ft('deploymentsHelp')}</p>
      {deployments === null && <p className={`text-sm ${MUTED}`}>{t('common.loading')}</p>}
      {deployments?.length === 0 && <p className={`text-sm ${MUTED}`} data-testid="no-deployments">{ft('noDeployments')}</p>}
      {deployments && deployments.length > 0 && (
        <ul className="divide-y divide-zinc-200 text-sm dark:divide-zinc-800">
          {deployments.map((d) => (
            <li key={d.model_id} data-deployment={d.model_id} className="flex flex-wrap items-center justify-between gap-2 py-2">
              <span className="min-w-0">
                <code className="break-all font-mono">{d.model_id}</code>
                <span className={`ml-2 text-xs ${MUTED}`}>{d.base}</span>
                {d.served === false && <span className={`ml-2 text-xs ${MUTED}`}>({ft('notServed')})</span>}
                {d.error && <span className="block break-words text-xs text-red-700 dark:text-red-400">{d.error}</span>}
              </span>
              <button type="button" className="btn-secondary py-1" disabled={actions.busy !== null} aria-label={`${ft('undeploy')} ${d.model_id}`} onClick={() => void actions.undeploy(d.model_id)}>
                <Square className="size-4" aria-hidden />
                {ft('undeploy')}
              </button>
            </li>
          ))}
        </ul>
      )}
      {actions.error && <p role="alert" className="break-words text-sm text-red-700 dark:text-red-400">{actions.error}</p>}
    </section>
  )
}
