import { useEffect, useRef, useState } from 'react'
import {
  Download,
  LogOut,
  MessageSquarePlus,
  Monitor,
  Moon,
  Pencil,
  Search,
  Settings,
  Sun,
  Trash2,
  Users,
  BarChart3,
  Boxes,
  Cpu,
  FlaskConical,
  X,
} from 'lucide-react'
import { api, type Conversation } from '../api'
import { useConversations } from '../stores/conversations'
import { conversationPath, navigate, useRouter } from '../stores/router'
import { useAuth } from '../stores/auth'
import { useUi, type Theme } from '../stores/ui'
import { LANGUAGES, useT } from '../i18n'
import { ConfirmDialog } from './Modal'

export const SEARCH_DEBOUNCE_MS = 300

function download(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = url
  link.download = filename
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 1000)
}

function ConversationItem({ conversation, active }: { conversation: Conversation; active: boolean }) {
  const t = useT()
  const rename = useConversations((s) => s.rename)
  const remove = useConversations((s) => s.remove)
  const notify = useUi((s) => s.notify)
  const closeSidebar = useUi((s) => s.setSidebarOpen)
  const [editing, setEditing] = useState(false)
  const [title, setTitle] = useState(conversation.title)
  const [confirming, setConfirming] = useState(false)
  const input = useRef<HTMLInputElement>(null)
  // Enter, Escape and blur can all end one edit: only the first one counts.
  const settled = useRef(false)
  const label = conversation.title || '…'

  useEffect(() => {
    if (editing) {
      settled.current = false
      input.current?.select()
    }
  }, [editing])

  async function saveTitle() {
    if (settled.current) return
    settled.current = true
    setEditing(false)
    const next = title.trim()
    if (!next || next === conversation.title) {
      setTitle(conversation.title)
      return
    }
    try {
      await rename(conversation.id, next)
    } catch (error) {
      setTitle(conversation.title)
      notify(error instanceof Error ? error.message : String(error), 'error')
    }
  }

  async function onDelete() {
    setConfirming(false)
    try {
      await remove(conversation.id)
      if (active) navigate('/')
    } catch (error) {
      notify(error instanceof Error ? error.message : String(error), 'error')
    }
  }

  async function onExport() {
    try {
      const blob = await api.exportConversation(conversation.id, 'markdown')
      download(blob, `${conversation.title.replace(/[^\p{L}\p{N} _-]+/gu, '').trim() || 'conversation'}.md`)
    } catch (error) {
      notify(error instanceof Error ? error.message : String(error), 'error')
    }
  }

  if (editing) {
    return (
      <li className="px-2 py-0.5">
        <label className="sr-only" htmlFor={`rename-${conversation.id}`}>
          {t('sidebar.renameLabel')}
        </label>
        <input
          id={`rename-${conversation.id}`}
          ref={input}
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
          onBlur={() => void saveTitle()}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.nativeEvent.isComposing) {
              e.preventDefault()
              void saveTitle()
            }
            if (e.key === 'Escape') {
              e.stopPropagation()
              settled.current = true
              setTitle(conversation.title)
              setEditing(false)
            }
          }}
          className="input py-1.5"
        />
      </li>
    )
  }

  return (
    <li className="group relative px-2" data-conversation-id={conversation.id}>
      <a
        href={conversationPath(conversation.id)}
        aria-current={active ? 'page' : undefined}
        onClick={(event) => {
          if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return
          event.preventDefault()
          navigate(conversationPath(conversation.id))
          closeSidebar(false)
        }}
        className={`block truncate rounded-lg py-2 pl-3 pr-24 text-sm sm:pr-3 sm:group-focus-within:pr-24 sm:group-hover:pr-24 ${
          active ? 'bg-zinc-200 font-medium dark:bg-zinc-800' : 'hover:bg-zinc-200/60 dark:hover:bg-zinc-800/60'
        }`}
        title={label}
      >
        {label}
      </a>
      <div className="absolute right-3 top-1/2 flex -translate-y-1/2 items-center gap-0.5 sm:opacity-0 sm:group-focus-within:opacity-100 sm:group-hover:opacity-100">
        <button type="button" onClick={() => setEditing(true)} aria-label={`${t('sidebar.rename')}: ${label}`} title={t('sidebar.rename')} className="rounded p-1 text-zinc-500 hover:bg-zinc-300 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-zinc-700 dark:hover:text-zinc-100">
          <Pencil className="size-3.5" aria-hidden />
        </button>
        <button type="button" onClick={onExport} aria-label={`${t('sidebar.exportMarkdown')}: ${label}`} title={t('sidebar.exportMarkdown')} className="rounded p-1 text-zinc-500 hover:bg-zinc-300 hover:text-zinc-900 dark:text-zinc-400 dark:hover:bg-zinc-700 dark:hover:text-zinc-100">
          <Download className="size-3.5" aria-hidden />
        </button>
        <button type="button" onClick={() => setConfirming(true)} aria-label={`${t('sidebar.delete')}: ${label}`} title={t('sidebar.delete')} className="rounded p-1 text-zinc-500 hover:bg-zinc-300 hover:text-red-700 dark:text-zinc-400 dark:hover:bg-zinc-700 dark:hover:text-red-400">
          <Trash2 className="size-3.5" aria-hidden />
        </button>
      </div>
      {confirming && (
        <ConfirmDialog
          title={t('sidebar.confirmDeleteTitle')}
          message={t('sidebar.confirmDelete', { title: label })}
          confirmLabel={t('common.delete')}
          onConfirm={onDelete}
          onCancel={() => setConfirming(false)}
        />
      )}
    </li>
  )
}

function NavLink({ href, icon, label }: { href: string; icon: React.ReactNode; label: string }) {
  const path = useRouter((s) => s.path)
  const closeSidebar = useUi((s) => s.setSidebarOpen)
  return (
    <a
      href={href}
      aria-current={path === href ? 'page' : undefined}
      onClick={(event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return
        event.preventDefault()
        navigate(href)
        closeSidebar(false)
      }}
      className={`flex items-center gap-2 rounded-lg px-3 py-2 text-sm ${path === href ? 'bg-zinc-200 font-medium dark:bg-zinc-800' : 'hover:bg-zinc-200/60 dark:hover:bg-zinc-800/60'}`}
    >
      {icon}
      {label}
    </a>
  )
}

const THEMES: { value: Theme; icon: React.ReactNode; key: 'nav.theme.light' | 'nav.theme.dark' | 'nav.theme.system' }[] = [
  { value: 'light', icon: <Sun className="size-4" aria-hidden />, key: 'nav.theme.light' },
  { value: 'dark', icon: <Moon className="size-4" aria-hidden />, key: 'nav.theme.dark' },
  { value: 'system', icon: <Monitor className="size-4" aria-hidden />, key: 'nav.theme.system' },
]

export function Sidebar() {
  const t = useT()
  const { items, loading, loaded, nextCursor, error, loadFirst, loadMore } = useConversations()
  const route = useRouter((s) => s.route)
  const identity = useAuth((s) => s.identity)
  const logout = useAuth((s) => s.logout)
  const { theme, setTheme, language, setLanguage, setSidebarOpen } = useUi()
  const [query, setQuery] = useState(useConversations.getState().query)
  const sentinel = useRef<HTMLDivElement>(null)
  const scroller = useRef<HTMLDivElement>(null)
  const activeId = route.name === 'chat' ? route.conversationId : null
  const firstRender = useRef(true)

  useEffect(() => {
    if (!useConversations.getState().loaded) void loadFirst('')
  }, [loadFirst])

  useEffect(() => {
    if (firstRender.current) {
      firstRender.current = false
      return
    }
    const timer = setTimeout(() => void loadFirst(query), SEARCH_DEBOUNCE_MS)
    return () => clearTimeout(timer)
  }, [query, loadFirst])

  useEffect(() => {
    const target = sentinel.current
    if (!target || typeof IntersectionObserver === 'undefined') return
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) void useConversations.getState().loadMore()
      },
      { root: scroller.current, rootMargin: '200px' },
    )
    observer.observe(target)
    return () => observer.disconnect()
  }, [nextCursor])

  return (
    <div className="flex h-full flex-col bg-zinc-50 dark:bg-zinc-950">
      <div className="flex items-center justify-between gap-2 p-3">
        <a
          href="/"
          className="flex items-center gap-2 rounded-lg px-2 py-1 text-base font-semibold"
          onClick={(e) => {
            e.preventDefault()
            navigate('/')
            setSidebarOpen(false)
          }}
        >
          <img src="/favicon.svg" alt="" className="size-6" />
          {t('app.name')}
        </a>
        <button type="button" className="rounded-lg p-2 hover:bg-zinc-200 md:hidden dark:hover:bg-zinc-800" aria-label={t('nav.closeSidebar')} onClick={() => setSidebarOpen(false)}>
          <X className="size-5" aria-hidden />
        </button>
      </div>
      <div className="space-y-2 px-3">
        <button
          type="button"
          onClick={() => {
            navigate('/')
            setSidebarOpen(false)
          }}
          className="flex w-full items-center gap-2 rounded-lg border border-zinc-300 bg-white px-3 py-2 text-sm font-medium hover:bg-zinc-100 dark:border-zinc-700 dark:bg-zinc-900 dark:hover:bg-zinc-800"
        >
          <MessageSquarePlus className="size-4" aria-hidden />
          {t('nav.newChat')}
        </button>
        <div className="relative">
          <Search className="pointer-events-none absolute left-2.5 top-1/2 size-4 -translate-y-1/2 text-zinc-500" aria-hidden />
          <label htmlFor="conversation-search" className="sr-only">
            {t('sidebar.search')}
          </label>
          <input
            id="conversation-search"
            type="search"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            placeholder={t('sidebar.searchPlaceholder')}
            className="input py-1.5 pl-8"
          />
        </div>
      </div>
      <nav aria-label={t('sidebar.conversations')} className="mt-3 min-h-0 flex-1 overflow-y-auto pb-2" ref={scroller}>
        {error && (
          <p role="alert" className="px-4 py-2 text-sm text-red-700 dark:text-red-400">
            {error}
          </p>
        )}
        {loaded && items.length === 0 && !loading && !error && (
          <p className="px-5 py-2 text-sm text-zinc-500 dark:text-zinc-400">{query.trim() ? t('sidebar.noResults') : t('sidebar.empty')}</p>
        )}
        <ul className="space-y-0.5" aria-busy={loading}>
          {items.map((conversation) => (
            <ConversationItem key={conversation.id} conversation={conversation} active={conversation.id === activeId} />
          ))}
        </ul>
        {nextCursor && (
          <div ref={sentinel} className="px-3 py-2">
            <button type="button" onClick={() => void loadMore()} disabled={loading} className="w-full rounded-lg py-1.5 text-xs text-zinc-500 hover:bg-zinc-200 dark:hover:bg-zinc-800">
              {loading ? t('common.loading') : t('sidebar.loadMore')}
            </button>
          </div>
        )}
        {loading && !nextCursor && <p className="px-5 py-2 text-sm text-zinc-500">{t('common.loading')}</p>}
      </nav>
      <div className="space-y-1 border-t border-zinc-200 p-3 dark:border-zinc-800">
        <nav aria-label={t('nav.primary')} className="space-y-0.5">
          <NavLink href="/settings" icon={<Settings className="size-4" aria-hidden />} label={t('nav.settings')} />
          <NavLink href="/admin/usage" icon={<BarChart3 className="size-4" aria-hidden />} label={t('nav.adminUsage')} />
          {identity?.role === 'admin' && (
            <>
              <NavLink href="/admin/users" icon={<Users className="size-4" aria-hidden />} label={t('nav.adminUsers')} />
              <NavLink href="/admin/models" icon={<Boxes className="size-4" aria-hidden />} label={t('nav.adminModels')} />
              <NavLink href="/admin/hardware" icon={<Cpu className="size-4" aria-hidden />} label={t('nav.adminHardware')} />
              <NavLink href="/admin/finetune" icon={<FlaskConical className="size-4" aria-hidden />} label={t('nav.adminFinetune')} />
            </>
          )}
        </nav>
        <div className="flex items-center justify-between gap-2 px-1 pt-1">
          <div role="radiogroup" aria-label={t('nav.theme')} className="flex rounded-lg bg-zinc-200/70 p-0.5 dark:bg-zinc-800">
            {THEMES.map((item) => (
              <button
                key={item.value}
                type="button"
                role="radio"
                aria-checked={theme === item.value}
                aria-label={t(item.key)}
                title={t(item.key)}
                onClick={() => setTheme(item.value)}
                className={`rounded-md p-1.5 ${theme === item.value ? 'bg-white shadow-sm dark:bg-zinc-700' : 'text-zinc-500 hover:text-zinc-900 dark:hover:text-zinc-100'}`}
              >
                {item.icon}
              </button>
            ))}
          </div>
          <label htmlFor="language-select" className="sr-only">
            {t('nav.language')}
          </label>
          <select id="language-select" value={language} onChange={(e) => setLanguage(e.target.value as 'en' | 'ko')} className="input w-auto py-1 text-xs">
            {LANGUAGES.map((l) => (
              <option key={l.code} value={l.code}>
                {l.label}
              </option>
            ))}
          </select>
        </div>
        <div className="flex items-center justify-between gap-2 px-1 pt-1">
          <span className="truncate text-sm text-zinc-600 dark:text-zinc-300" title={identity?.username}>
            {identity?.username}
          </span>
          <button type="button" onClick={() => void logout()} className="inline-flex items-center gap-1.5 rounded-lg px-2 py-1.5 text-sm text-zinc-600 hover:bg-zinc-200 dark:text-zinc-300 dark:hover:bg-zinc-800">
            <LogOut className="size-4" aria-hidden />
            {t('nav.logout')}
          </button>
        </div>
      </div>
    </div>
  )
}
