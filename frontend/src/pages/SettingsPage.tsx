import { useEffect, useState } from 'react'
import { Check, Copy, KeyRound, Trash2 } from 'lucide-react'
import { api, type ApiKey, type ApiKeyCreated, type UserSettings } from '../api'
import { useAuth } from '../stores/auth'
import { useModels } from '../stores/models'
import { useUi } from '../stores/ui'
import { LANGUAGES, useT } from '../i18n'
import { copyText } from '../lib/clipboard'
import { formatDate } from '../lib/urls'
import { PageShell } from '../components/PageShell'
import { ConfirmDialog } from '../components/Modal'
import { TrainingConsentSection } from '../components/TrainingConsent'

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function numberOrNull(text: string, integer = false): number | null {
  if (!text.trim()) return null
  const n = integer ? Number.parseInt(text, 10) : Number.parseFloat(text)
  return Number.isFinite(n) ? n : null
}

function DefaultsSection() {
  const t = useT()
  const profile = useAuth((s) => s.profile)
  const setProfile = useAuth((s) => s.setProfile)
  const models = useModels((s) => s.models)
  const notify = useUi((s) => s.notify)
  const settings = profile?.settings ?? {}
  const [model, setModel] = useState(settings.default_model ?? '')
  const [systemPrompt, setSystemPrompt] = useState(settings.system_prompt ?? '')
  const [temperature, setTemperature] = useState(settings.temperature?.toString() ?? '')
  const [topP, setTopP] = useState(settings.top_p?.toString() ?? '')
  const [maxTokens, setMaxTokens] = useState(settings.max_tokens?.toString() ?? '')
  const [busy, setBusy] = useState(false)

  useEffect(() => {
    if (!profile) return
    const s = profile.settings
    setModel(s.default_model ?? '')
    setSystemPrompt(s.system_prompt ?? '')
    setTemperature(s.temperature?.toString() ?? '')
    setTopP(s.top_p?.toString() ?? '')
    setMaxTokens(s.max_tokens?.toString() ?? '')
  }, [profile])

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    const body: UserSettings = {
      default_model: model || null,
      system_prompt: systemPrompt.trim() ? systemPrompt : null,
      temperature: numberOrNull(temperature),
      top_p: numberOrNull(topP),
      max_tokens: numberOrNull(maxTokens, true),
    }
    try {
      setProfile(await api.updateSettings(body))
      notify(t('common.saved'))
    } catch (error) {
      notify(errorText(error), 'error')
    } finally {
      setBusy(false)
    }
  }

  return (
    <section aria-labelledby="defaults-title" className="card">
      <h2 id="defaults-title" className="text-base font-semibold">
        {t('settings.defaults')}
      </h2>
      <p className="mb-4 mt-1 text-sm text-zinc-500 dark:text-zinc-400">{t('settings.defaultsHelp')}</p>
      <form onSubmit={onSubmit} className="space-y-4">
        <div>
          <label htmlFor="settings-model" className="label">
            {t('settings.defaultModel')}
          </label>
          <select id="settings-model" value={model} onChange={(e) => setModel(e.target.value)} className="input">
            <option value="">{t('common.default')}</option>
            {models.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name || m.id}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="settings-system-prompt" className="label">
            {t('settings.systemPrompt')}
          </label>
          <textarea id="settings-system-prompt" rows={4} value={systemPrompt} onChange={(e) => setSystemPrompt(e.target.value)} className="input resize-y" />
        </div>
        <div className="grid gap-4 sm:grid-cols-3">
          <div>
            <label htmlFor="settings-temperature" className="label">
              {t('chat.temperature')}
            </label>
            <input id="settings-temperature" type="number" min={0} max={2} step={0.05} value={temperature} placeholder={t('common.default')} onChange={(e) => setTemperature(e.target.value)} className="input" />
          </div>
          <div>
            <label htmlFor="settings-top-p" className="label">
              {t('chat.topP')}
            </label>
            <input id="settings-top-p" type="number" min={0.01} max={1} step={0.05} value={topP} placeholder={t('common.default')} onChange={(e) => setTopP(e.target.value)} className="input" />
          </div>
          <div>
            <label htmlFor="settings-max-tokens" className="label">
              {t('chat.maxTokens')}
            </label>
            <input id="settings-max-tokens" type="number" min={1} step={1} value={maxTokens} placeholder={t('common.default')} onChange={(e) => setMaxTokens(e.target.value)} className="input" />
          </div>
        </div>
        <div className="flex justify-end">
          <button type="submit" disabled={busy} className="btn-primary">
            {t('common.save')}
          </button>
        </div>
      </form>
    </section>
  )
}

function PreferencesSection() {
  const t = useT()
  const identity = useAuth((s) => s.identity)
  const { language, setLanguage } = useUi()
  return (
    <section aria-labelledby="profile-title" className="card">
      <h2 id="profile-title" className="text-base font-semibold">
        {t('settings.profile')}
      </h2>
      <p className="mb-4 mt-1 text-sm text-zinc-500 dark:text-zinc-400">
        {t('settings.signedInAs', { name: identity?.username ?? '', role: identity?.role ?? '' })}
      </p>
      <label htmlFor="settings-language" className="label">
        {t('settings.language')}
      </label>
      <select
        id="settings-language"
        value={language}
        onChange={(e) => {
          const next = e.target.value as 'en' | 'ko'
          setLanguage(next)
          void api.updateSettings({ language: next }).catch(() => undefined)
        }}
        className="input sm:max-w-xs"
      >
        {LANGUAGES.map((l) => (
          <option key={l.code} value={l.code}>
            {l.label}
          </option>
        ))}
      </select>
    </section>
  )
}

function PasswordSection() {
  const t = useT()
  const identity = useAuth((s) => s.identity)
  const login = useAuth((s) => s.login)
  const notify = useUi((s) => s.notify)
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [confirm, setConfirm] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setError(null)
    if (next !== confirm) {
      setError(t('settings.passwordMismatch'))
      return
    }
    setBusy(true)
    try {
      await api.changePassword(current, next)
      // The change ends every session, this one included: sign in again with the new password.
      if (identity) await login(identity.username, next).catch(() => undefined)
      setCurrent('')
      setNext('')
      setConfirm('')
      notify(t('settings.passwordChanged'))
    } catch (err) {
      setError(errorText(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <section aria-labelledby="password-title" className="card">
      <h2 id="password-title" className="mb-4 text-base font-semibold">
        {t('settings.password')}
      </h2>
      <form onSubmit={onSubmit} className="space-y-4 sm:max-w-sm">
        {error && (
          <p role="alert" className="rounded-lg bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">
            {error}
          </p>
        )}
        <input type="text" name="username" autoComplete="username" value={identity?.username ?? ''} readOnly hidden />
        <div>
          <label htmlFor="password-current" className="label">
            {t('settings.currentPassword')}
          </label>
          <input id="password-current" type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor="password-new" className="label">
            {t('settings.newPassword')}
          </label>
          <input id="password-new" type="password" autoComplete="new-password" required minLength={8} value={next} onChange={(e) => setNext(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor="password-confirm" className="label">
            {t('settings.confirmPassword')}
          </label>
          <input id="password-confirm" type="password" autoComplete="new-password" required minLength={8} value={confirm} onChange={(e) => setConfirm(e.target.value)} className="input" />
        </div>
        <button type="submit" disabled={busy} className="btn-primary">
          {t('settings.changePassword')}
        </button>
      </form>
    </section>
  )
}

function KeysSection() {
  const t = useT()
  const language = useUi((s) => s.language)
  const notify = useUi((s) => s.notify)
  const [keys, setKeys] = useState<ApiKey[] | null>(null)
  const [name, setName] = useState('')
  const [created, setCreated] = useState<ApiKeyCreated | null>(null)
  const [copied, setCopied] = useState(false)
  const [revoking, setRevoking] = useState<ApiKey | null>(null)
  const [busy, setBusy] = useState(false)

  useEffect(() => {
    api.listKeys().then(setKeys, (error: unknown) => notify(errorText(error), 'error'))
  }, [notify])

  async function onCreate(event: React.FormEvent) {
    event.preventDefault()
    if (!name.trim()) return
    setBusy(true)
    try {
      const key = await api.createKey(name.trim())
      setCreated(key)
      setCopied(false)
      setName('')
      setKeys((list) => [key, ...(list ?? [])])
    } catch (error) {
      notify(errorText(error), 'error')
    } finally {
      setBusy(false)
    }
  }

  async function onRevoke(key: ApiKey) {
    setRevoking(null)
    try {
      const revoked = await api.revokeKey(key.id)
      setKeys((list) => (list ?? []).map((k) => (k.id === key.id ? { ...k, ...revoked } : k)))
      if (created?.id === key.id) setCreated(null)
    } catch (error) {
      notify(errorText(error), 'error')
    }
  }

  return (
    <section aria-labelledby="keys-title" className="card">
      <h2 id="keys-title" className="text-base font-semibold">
        {t('settings.keys')}
      </h2>
      <p className="mb-4 mt-1 text-sm text-zinc-500 dark:text-zinc-400">{t('settings.keysHelp', { url: `${location.origin}/v1` })}</p>
      <form onSubmit={onCreate} className="flex flex-col gap-2 sm:flex-row sm:items-end">
        <div className="flex-1">
          <label htmlFor="key-name" className="label">
            {t('settings.keyName')}
          </label>
          <input id="key-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} className="input" />
        </div>
        <button type="submit" disabled={busy || !name.trim()} className="btn-primary">
          <KeyRound className="size-4" aria-hidden />
          {t('settings.createKey')}
        </button>
      </form>
      {created && (
        <div role="status" className="mt-4 rounded-lg border border-accent-500/40 bg-accent-50 p-3 dark:bg-accent-700/20">
          <p className="mb-2 text-sm font-medium text-accent-700 dark:text-accent-500">{t('settings.keyCreated')}</p>
          <div className="flex items-center gap-2">
            <code data-testid="new-api-key" className="min-w-0 flex-1 break-all rounded bg-white px-2 py-1.5 font-mono text-xs dark:bg-zinc-900">
              {created.key}
            </code>
            <button
              type="button"
              className="btn-secondary px-3"
              onClick={async () => {
                if (await copyText(created.key)) setCopied(true)
              }}
            >
              {copied ? <Check className="size-4" aria-hidden /> : <Copy className="size-4" aria-hidden />}
              {copied ? t('common.copied') : t('settings.copyKey')}
            </button>
          </div>
        </div>
      )}
      <div className="mt-4 overflow-x-auto">
        {keys && keys.length === 0 && <p className="text-sm text-zinc-500 dark:text-zinc-400">{t('settings.noKeys')}</p>}
        {keys && keys.length > 0 && (
          <table className="w-full text-left text-sm">
            <thead className="text-xs uppercase text-zinc-500 dark:text-zinc-400">
              <tr>
                <th scope="col" className="py-2 pr-3 font-medium">
                  {t('settings.keyName')}
                </th>
                <th scope="col" className="py-2 pr-3 font-medium">
                  {t('settings.keyPrefix')}
                </th>
                <th scope="col" className="hidden py-2 pr-3 font-medium sm:table-cell">
                  {t('settings.keyCreatedAt')}
                </th>
                <th scope="col" className="hidden py-2 pr-3 font-medium sm:table-cell">
                  {t('settings.keyLastUsed')}
                </th>
                <th scope="col" className="py-2 font-medium">
                  <span className="sr-only">{t('admin.actions')}</span>
                </th>
              </tr>
            </thead>
            <tbody className="divide-y divide-zinc-200 dark:divide-zinc-800">
              {keys.map((key) => (
                <tr key={key.id} data-key-id={key.id}>
                  <td className="py-2 pr-3">{key.name}</td>
                  <td className="py-2 pr-3 font-mono text-xs">{key.prefix}…</td>
                  <td className="hidden py-2 pr-3 sm:table-cell">{formatDate(key.created_at, language)}</td>
                  <td className="hidden py-2 pr-3 sm:table-cell">{key.last_used_at ? formatDate(key.last_used_at, language) : t('common.never')}</td>
                  <td className="py-2 text-right">
                    {key.revoked_at ? (
                      <span className="text-xs text-zinc-500">{t('settings.keyRevoked')}</span>
                    ) : (
                      <button type="button" onClick={() => setRevoking(key)} className="inline-flex items-center gap-1 rounded-md px-2 py-1 text-xs text-red-700 hover:bg-red-50 dark:text-red-400 dark:hover:bg-red-950" aria-label={`${t('settings.keyRevoke')}: ${key.name}`}>
                        <Trash2 className="size-3.5" aria-hidden />
                        {t('settings.keyRevoke')}
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      {revoking && (
        <ConfirmDialog
          title={t('settings.confirmRevokeTitle')}
          message={t('settings.confirmRevoke', { name: revoking.name })}
          confirmLabel={t('settings.keyRevoke')}
          onConfirm={() => void onRevoke(revoking)}
          onCancel={() => setRevoking(null)}
        />
      )}
    </section>
  )
}

export function SettingsPage() {
  const t = useT()
  return (
    <PageShell title={t('settings.title')}>
      <PreferencesSection />
      <DefaultsSection />
      <TrainingConsentSection />
      <KeysSection />
      <PasswordSection />
    </PageShell>
  )
}
