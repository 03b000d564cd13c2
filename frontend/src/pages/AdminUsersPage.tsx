import { useEffect, useState } from 'react'
import { UserPlus } from 'lucide-react'
import { api, type User } from '../api'
import { useAuth } from '../stores/auth'
import { useUi } from '../stores/ui'
import { useT } from '../i18n'
import { formatDate } from '../lib/urls'
import { PageShell } from '../components/PageShell'
import { Modal } from '../components/Modal'

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function CreateUserForm({ onCreated }: { onCreated: (user: User) => void }) {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const [username, setUsername] = useState('')
  const [email, setEmail] = useState('')
  const [password, setPassword] = useState('')
  const [role, setRole] = useState('user')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      const user = await api.createUser({ username: username.trim(), password, email: email.trim() || null, role })
      onCreated(user)
      notify(t('admin.userCreated', { name: user.username }))
      setUsername('')
      setEmail('')
      setPassword('')
      setRole('user')
    } catch (err) {
      setError(errorText(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <section aria-labelledby="create-user-title" className="card">
      <h2 id="create-user-title" className="mb-4 text-base font-semibold">
        {t('admin.createUser')}
      </h2>
      <form onSubmit={onSubmit} className="grid gap-3 sm:grid-cols-2 lg:grid-cols-5 lg:items-end">
        {error && (
          <p role="alert" className="rounded-lg bg-red-50 px-3 py-2 text-sm text-red-800 sm:col-span-2 lg:col-span-5 dark:bg-red-950 dark:text-red-200">
            {error}
          </p>
        )}
        <div>
          <label htmlFor="new-username" className="label">
            {t('admin.username')}
          </label>
          <input id="new-username" required pattern="[A-Za-z0-9_.@\-]{1,64}" autoComplete="off" value={username} onChange={(e) => setUsername(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor="new-email" className="label">
            {t('admin.email')}
          </label>
          <input id="new-email" type="email" autoComplete="off" value={email} onChange={(e) => setEmail(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor="new-password" className="label">
            {t('admin.password')}
          </label>
          <input id="new-password" type="password" required minLength={8} autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} className="input" />
        </div>
        <div>
          <label htmlFor="new-role" className="label">
            {t('admin.role')}
          </label>
          <select id="new-role" value={role} onChange={(e) => setRole(e.target.value)} className="input">
            <option value="user">{t('admin.role.user')}</option>
            <option value="admin">{t('admin.role.admin')}</option>
          </select>
        </div>
        <button type="submit" disabled={busy} className="btn-primary">
          <UserPlus className="size-4" aria-hidden />
          {t('admin.createUser')}
        </button>
      </form>
    </section>
  )
}

function ResetPasswordDialog({ user, onClose }: { user: User; onClose: () => void }) {
  const t = useT()
  const notify = useUi((s) => s.notify)
  const [password, setPassword] = useState('')
  const [error, setError] = useState<string | null>(null)
  return (
    <Modal title={t('admin.resetPassword')} onClose={onClose}>
      <form
        onSubmit={async (event) => {
          event.preventDefault()
          try {
            await api.updateUser(user.id, { password })
            notify(t('admin.updated'))
            onClose()
          } catch (err) {
            setError(errorText(err))
          }
        }}
        className="space-y-4"
      >
        {error && (
          <p role="alert" className="rounded-lg bg-red-50 px-3 py-2 text-sm text-red-800 dark:bg-red-950 dark:text-red-200">
            {error}
          </p>
        )}
        <div>
          <label htmlFor="reset-password" className="label">
            {t('admin.newPasswordFor', { name: user.username })}
          </label>
          <input id="reset-password" data-autofocus type="password" required minLength={8} autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} className="input" />
        </div>
        <div className="flex justify-end gap-2">
          <button type="button" onClick={onClose} className="btn-secondary">
            {t('common.cancel')}
          </button>
          <button type="submit" className="btn-primary">
            {t('common.save')}
          </button>
        </div>
      </form>
    </Modal>
  )
}

export function AdminUsersPage() {
  const t = useT()
  const identity = useAuth((s) => s.identity)
  const language = useUi((s) => s.language)
  const notify = useUi((s) => s.notify)
  const [users, setUsers] = useState<User[] | null>(null)
  const [error, setError] = useState<string | null>(null)
  const [resetting, setResetting] = useState<User | null>(null)

  useEffect(() => {
    if (identity?.role !== 'admin') return
    api.listUsers().then(setUsers, (err: unknown) => setError(errorText(err)))
  }, [identity?.role])

  async function update(user: User, patch: { role?: string; disabled?: boolean }) {
    try {
      const updated = await api.updateUser(user.id, patch)
      setUsers((list) => (list ?? []).map((u) => (u.id === user.id ? updated : u)))
      notify(t('admin.updated'))
    } catch (err) {
      notify(errorText(err), 'error')
    }
  }

  if (identity?.role !== 'admin') {
    return (
      <PageShell title={t('admin.users')}>
        <p role="alert">{t('admin.forbidden')}</p>
      </PageShell>
    )
  }

  return (
    <PageShell title={t('admin.users')}>
      <CreateUserForm onCreated={(user) => setUsers((list) => [...(list ?? []), user])} />
      <section aria-labelledby="users-title" className="card overflow-x-auto">
        <h2 id="users-title" className="mb-3 text-base font-semibold">
          {t('admin.users')}
        </h2>
        {error && (
          <p role="alert" className="text-sm text-red-700 dark:text-red-400">
            {error}
          </p>
        )}
        {!users && !error && <p className="text-sm text-zinc-500">{t('common.loading')}</p>}
        {users && (
          <table className="w-full min-w-[560px] text-left text-sm">
            <thead className="text-xs uppercase text-zinc-500 dark:text-zinc-400">
              <tr>
                <th scope="col" className="py-2 pr-3 font-medium">{t('admin.username')}</th>
                <th scope="col" className="py-2 pr-3 font-medium">{t('admin.role')}</th>
                <th scope="col" className="py-2 pr-3 font-medium">{t('admin.status')}</th>
                <th scope="col" className="hidden py-2 pr-3 font-medium md:table-cell">{t('admin.created')}</th>
                <th scope="col" className="py-2 text-right font-medium">{t('admin.actions')}</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-zinc-200 dark:divide-zinc-800">
              {users.map((user) => {
                const self = user.id === identity.user_id
                return (
                  <tr key={user.id} data-user={user.username}>
                    <td className="py-2 pr-3">
                      <div className="font-medium">{user.username}</div>
                      {user.email && <div className="text-xs text-zinc-500 dark:text-zinc-400">{user.email}</div>}
                    </td>
                    <td className="py-2 pr-3">
                      <label htmlFor={`role-${user.id}`} className="sr-only">
                        {t('admin.role')}: {user.username}
                      </label>
                      <select id={`role-${user.id}`} value={user.role} disabled={self} onChange={(e) => void update(user, { role: e.target.value })} className="input w-auto py-1">
                        <option value="user">{t('admin.role.user')}</option>
                        <option value="admin">{t('admin.role.admin')}</option>
                      </select>
                    </td>
                    <td className="py-2 pr-3">
                      <span className={`rounded-full px-2 py-0.5 text-xs font-medium ${user.disabled ? 'bg-zinc-200 text-zinc-700 dark:bg-zinc-700 dark:text-zinc-200' : 'bg-accent-50 text-accent-700 dark:bg-accent-700/30 dark:text-accent-500'}`}>
                        {user.disabled ? t('admin.disabled') : t('admin.active')}
                      </span>
                    </td>
                    <td className="hidden py-2 pr-3 md:table-cell">{formatDate(user.created_at, language)}</td>
                    <td className="space-x-1 whitespace-nowrap py-2 text-right">
                      <button type="button" className="rounded-md px-2 py-1 text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800" onClick={() => setResetting(user)} aria-label={`${t('admin.resetPassword')}: ${user.username}`}>
                        {t('admin.resetPassword')}
                      </button>
                      {!self && (
                        <button type="button" className="rounded-md px-2 py-1 text-xs hover:bg-zinc-100 dark:hover:bg-zinc-800" onClick={() => void update(user, { disabled: !user.disabled })} aria-label={`${user.disabled ? t('admin.enable') : t('admin.disable')}: ${user.username}`}>
                          {user.disabled ? t('admin.enable') : t('admin.disable')}
                        </button>
                      )}
                    </td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        )}
      </section>
      {resetting && <ResetPasswordDialog user={resetting} onClose={() => setResetting(null)} />}
    </PageShell>
  )
}
