import { useEffect } from 'react'
import { useAuth } from './stores/auth'
import { useRouter, navigate } from './stores/router'
import { applyDocumentSettings, useUi } from './stores/ui'
import { useModels } from './stores/models'
import { useConversations } from './stores/conversations'
import { useChat } from './stores/chat'
import { useT } from './i18n'
import { Sidebar } from './components/Sidebar'
import { Toast } from './components/Toast'
import { LoginPage } from './pages/LoginPage'
import { ChatPage } from './pages/ChatPage'
import { SettingsPage } from './pages/SettingsPage'
import { AdminUsersPage } from './pages/AdminUsersPage'
import { UsagePage } from './pages/UsagePage'
import { AdminModelsPage } from './pages/AdminModelsPage'
import { AdminHardwarePage } from './pages/AdminHardwarePage'
import { AdminFinetunePage } from './pages/AdminFinetunePage'

function Shell() {
  const route = useRouter((s) => s.route)
  const sidebarOpen = useUi((s) => s.sidebarOpen)
  const setSidebarOpen = useUi((s) => s.setSidebarOpen)
  const t = useT()

  useEffect(() => {
    void useModels.getState().load()
    return () => {
      // Signing out: drop what the previous user saw.
      useChat.getState().detach()
      useChat.setState({ conversationId: null, conversation: null, messages: {}, leafId: null, status: 'empty' })
      useConversations.setState({ items: [], nextCursor: null, query: '', loaded: false })
    }
  }, [])

  useEffect(() => {
    if (route.name === 'login') navigate('/', { replace: true })
  }, [route.name])

  useEffect(() => {
    if (!sidebarOpen) return
    const onKey = (event: KeyboardEvent) => event.key === 'Escape' && setSidebarOpen(false)
    window.addEventListener('keydown', onKey)
    return () => window.removeEventListener('keydown', onKey)
  }, [sidebarOpen, setSidebarOpen])

  let page: React.ReactNode
  switch (route.name) {
    case 'settings':
      page = <SettingsPage />
      break
    case 'adminUsers':
      page = <AdminUsersPage />
      break
    case 'adminUsage':
      page = <UsagePage />
      break
    case 'adminModels':
      page = <AdminModelsPage />
      break
    case 'adminHardware':
      page = <AdminHardwarePage />
      break
    case 'adminFinetune':
      page = <AdminFinetunePage />
      break
    case 'chat':
      page = <ChatPage conversationId={route.conversationId} />
      break
    default:
      page = <ChatPage conversationId={null} />
  }

  return (
    <div className="flex h-full overflow-hidden">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-[70] focus:rounded focus:bg-white focus:px-3 focus:py-2 focus:text-sm dark:focus:bg-zinc-800">
        {t('nav.skip')}
      </a>
      {sidebarOpen && <div className="fixed inset-0 z-30 bg-black/40 md:hidden" aria-hidden onClick={() => setSidebarOpen(false)} />}
      <aside
        aria-label={t('sidebar.conversations')}
        className={`fixed inset-y-0 left-0 z-40 w-72 max-w-[85vw] border-r border-zinc-200 transition-transform motion-reduce:transition-none md:static md:w-64 md:translate-x-0 dark:border-zinc-800 ${
          sidebarOpen ? 'translate-x-0' : '-translate-x-full'
        }`}
      >
        <Sidebar />
      </aside>
      <main id="main" className="flex min-w-0 flex-1">
        {page}
      </main>
      <Toast />
    </div>
  )
}

export function App() {
  const status = useAuth((s) => s.status)
  const theme = useUi((s) => s.theme)
  const language = useUi((s) => s.language)
  const t = useT()

  useEffect(() => {
    applyDocumentSettings(theme, language)
    if (theme !== 'system') return
    const query = globalThis.matchMedia?.('(prefers-color-scheme: dark)')
    const onChange = () => applyDocumentSettings(theme, language)
    query?.addEventListener('change', onChange)
    return () => query?.removeEventListener('change', onChange)
  }, [theme, language])

  useEffect(() => {
    void useAuth.getState().init()
  }, [])

  if (status === 'loading') {
    return (
      <div className="flex h-full items-center justify-center text-sm text-zinc-500" role="status">
        {t('common.loading')}
      </div>
    )
  }
  if (status === 'anonymous') {
    return (
      <>
        <LoginPage />
        <Toast />
      </>
    )
  }
  return <Shell />
}
