import { useState } from 'react'
import { useAuth } from '../stores/auth'
import { useUi } from '../stores/ui'
import { LANGUAGES, useT } from '../i18n'

export function LoginPage() {
  const t = useT()
  const login = useAuth((s) => s.login)
  const expired = useAuth((s) => s.expired)
  const { language, setLanguage } = useUi()
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      await login(username.trim(), password)
    } catch (err) {
      setError(err instanceof Error ? err.message : t('login.failed'))
      setBusy(false)
    }
  }

  return (
    <main className="flex min-h-full items-center justify-center bg-zinc-50 px-4 py-12 dark:bg-zinc-950">
      <div className="w-full max-w-sm">
        <div className="mb-8 flex flex-col items-center text-center">
          <img src="/favicon.svg" alt="" className="mb-4 size-12" />
          <h1 className="text-2xl font-semibold">{t('login.title')}</h1>
          <p className="mt-1 text-sm text-zinc-500 dark:text-zinc-400">{t('login.subtitle')}</p>
        </div>
        <form onSubmit={onSubmit} className="card space-y-4 shadow-sm" aria-describedby={error ? 'login-error' : undefined}>
          {expired && !error && (
            <p role="status" className="rounded-lg bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-200">
              {t('login.expired')}
            </p>
          )}
          {error && (
            <p id="login-error" role="alert" className="rounded-lg bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">
              {error}
            </p>
          )}
          <div>
            <label htmlFor="login-username" className="label">
              {t('login.username')}
            </label>
            <input id="login-username" name="username" autoComplete="username" required autoFocus value={username} onChange={(e) => setUsername(e.target.value)} className="input" />
          </div>
          <div>
            <label htmlFor="login-password" className="label">
              {t('login.password')}
            </label>
            <input id="login-password" name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} className="input" />
          </div>
          <button type="submit" disabled={busy} className="btn-primary w-full">
            {busy ? t('login.submitting') : t('login.submit')}
          </button>
        </form>
        <div className="mt-6 flex justify-center">
          <label htmlFor="login-language" className="sr-only">
            {t('nav.language')}
          </label>
          <select id="login-language" value={language} onChange={(e) => setLanguage(e.target.value as 'en' | 'ko')} className="input w-auto py-1 text-xs">
            {LANGUAGES.map((l) => (
              <option key={l.code} value={l.code}>
                {l.label}
              </option>
            ))}
          </select>
        </div>
      </div>
    </main>
  )
}
