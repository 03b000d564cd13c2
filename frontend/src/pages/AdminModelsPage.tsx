import { useEffect } from 'react'
import { RefreshCw } from 'lucide-react'
import { useModels } from '../stores/models'
import { useT } from '../i18n'
import { PageShell } from '../components/PageShell'

/** Models the gateway offers, with live health. Management (switch, enable) arrives with the engines API. */
export function AdminModelsPage() {
  const t = useT()
  const { models, defaultModel, loaded, error, load } = useModels()

  useEffect(() => {
    void load()
  }, [load])

  return (
    <PageShell
      title={t('models.title')}
      actions={
        <button type="button" onClick={() => void load()} className="btn-secondary py-1.5">
          <RefreshCw className="size-4" aria-hidden />
          {t('models.refresh')}
        </button>
      }
    >
      {error && (
        <p role="alert" className="text-sm text-red-700 dark:text-red-400">
          {error}
        </p>
      )}
      {!loaded && <p className="text-sm text-zinc-500">{t('common.loading')}</p>}
      <ul className="grid gap-4 md:grid-cols-2">
        {models.map((model) => (
          <li key={model.id} className="card" data-model={model.id}>
            <div className="flex items-start justify-between gap-3">
              <div className="min-w-0">
                <h2 className="truncate text-base font-semibold">{model.name || model.id}</h2>
                <p className="font-mono text-xs text-zinc-500 dark:text-zinc-400">{model.id}</p>
              </div>
              <span
                className={`inline-flex shrink-0 items-center gap-1.5 rounded-full px-2 py-0.5 text-xs font-medium ${
                  model.healthy ? 'bg-accent-50 text-accent-700 dark:bg-accent-700/30 dark:text-accent-500' : 'bg-red-50 text-red-800 dark:bg-red-950 dark:text-red-300'
                }`}
              >
                <span className={`size-1.5 rounded-full ${model.healthy ? 'bg-accent-600' : 'bg-red-600'}`} aria-hidden />
                {model.healthy ? t('models.healthy') : t('models.unhealthy')}
              </span>
            </div>
            <dl className="mt-4 grid grid-cols-[auto_1fr] gap-x-4 gap-y-1.5 text-sm">
              <dt className="text-zinc-500 dark:text-zinc-400">{t('models.default')}</dt>
              <dd>{model.id === defaultModel ? t('common.yes') : t('common.no')}</dd>
              <dt className="text-zinc-500 dark:text-zinc-400">{t('models.aliases')}</dt>
              <dd className="font-mono text-xs">{model.aliases.length ? model.aliases.join(', ') : '–'}</dd>
              <dt className="text-zinc-500 dark:text-zinc-400">{t('models.context')}</dt>
              <dd>{model.context_length ? model.context_length.toLocaleString() : '–'}</dd>
              <dt className="text-zinc-500 dark:text-zinc-400">{t('models.params')}</dt>
              <dd className="font-mono text-xs">
                {Object.keys(model.default_params).length ? JSON.stringify(model.default_params) : '–'}
              </dd>
            </dl>
          </li>
        ))}
      </ul>
    </PageShell>
  )
}
