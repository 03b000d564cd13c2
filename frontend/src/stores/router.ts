import { create } from 'zustand'

export type Route =
  | { name: 'chat'; conversationId: string | null }
  | { name: 'settings' }
  | { name: 'adminUsers' }
  | { name: 'adminUsage' }
  | { name: 'adminModels' }
  | { name: 'adminHardware' }
  | { name: 'adminFinetune' }
  | { name: 'login' }

export function parseRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, '') || '/'
  const chat = /^\/c\/([^/]+)$/.exec(path)
  if (chat?.[1]) return { name: 'chat', conversationId: decodeURIComponent(chat[1]) }
  switch (path) {
    case '/settings':
      return { name: 'settings' }
    case '/admin/users':
    case '/admin':
      return { name: 'adminUsers' }
    case '/admin/usage':
    case '/usage':
      return { name: 'adminUsage' }
    case '/admin/models':
      return { name: 'adminModels' }
    case '/admin/hardware':
      return { name: 'adminHardware' }
    case '/admin/finetune':
      return { name: 'adminFinetune' }
    case '/login':
      return { name: 'login' }
    default:
      return { name: 'chat', conversationId: null }
  }
}

interface RouterState {
  path: string
  route: Route
  navigate(path: string, options?: { replace?: boolean }): void
}

export const useRouter = create<RouterState>((set) => ({
  path: globalThis.location?.pathname ?? '/',
  route: parseRoute(globalThis.location?.pathname ?? '/'),
  navigate(path, options) {
    if (path === globalThis.location.pathname) return
    if (options?.replace) history.replaceState(null, '', path)
    else history.pushState(null, '', path)
    set({ path, route: parseRoute(path) })
  },
}))

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', () => {
    useRouter.setState({ path: location.pathname, route: parseRoute(location.pathname) })
  })
}

export const navigate = (path: string, options?: { replace?: boolean }): void =>
  useRouter.getState().navigate(path, options)

export const conversationPath = (id: string): string => `/c/${encodeURIComponent(id)}`
