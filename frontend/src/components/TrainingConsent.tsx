import { useEffect, useState } from 'react'
import { api, type TrainingConsent } from '../api'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** Settings: may this user's rated conversations train models (stored on the server). */
export function TrainingConsentSection() {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const [consent, setConsent] = useState<TrainingConsent | null>(null)
  const [busy, setBusy] = useState(false)

  useEffect(() => {
    api.trainingConsent().then(setConsent, () => setConsent(null))
  }, [])

  async function choose(value: boolean | null) {
    setBusy(true)
    try {
      setConsent(await api.setTrainingConsent(value))
      notify(t('common.saved'))
    } catch (error) {
      notify(errorText(error), 'error')
    } finally {
      setBusy(false)
    }
  }

  return (
    <section aria-labelledby="training-title" className="card">
      <h2 id="training-title" className="text-base font-semibold">
        {t('training.title')}
      </h2>
      <p className="mb-4 mt-1 text-sm text-zinc-500 dark:text-zinc-400">{t('training.help')}</p>
      {consent && (
        <div className="space-y-2">
          <label className="flex items-center gap-2 text-sm">
            <input type="checkbox" checked={consent.opted_in} disabled={busy} onChange={(e) => void choose(e.target.checked)} className="size-4" />
            {t('training.allow')}
          </label>
          <p className="text-xs text-zinc-500 dark:text-zinc-400" data-testid="training-state">
            {consent.choice === null ? t(consent.default ? 'training.defaultIn' : 'training.defaultOut') : t('training.ownChoice')}
            {consent.choice !== null && (
              <button type="button" disabled={busy} onClick={() => void choose(null)} className="ml-2 underline">
                {t('training.useDefault')}
              </button>
            )}
          </p>
        </div>
      )}
    </section>
  )
}
