import { create } from 'zustand'
import { api, ApiError, type User, type VerifyResponse } from '../api'
import { refreshSession, REFRESH_MARGIN_MS } from '../api/client'
import { tokens } from '../api/tokens'
import { hasSavedLanguage, useUi } from './ui'

type Status = 'loading' | 'anonymous' | 'authenticated'

interface AuthState {
  status: Status
  identity: VerifyResponse | null
  profile: User | null
  /** Set when a session ended by itself (expired/revoked), for the login page. */
  expired: boolean
  init(): Promise<void>
  login(username: string, password: string): Promise<void>
  logout(): Promise<void>
  loadProfile(): Promise<void>
  setProfile(profile: User): void
}

let refreshTimer: ReturnType<typeof setTimeout> | null = null

/** Refreshes the access token shortly before it expires. */
function scheduleRefresh(): void {
  if (refreshTimer) clearTimeout(refreshTimer)
  refreshTimer = null
  const stored = tokens.get()
  if (!stored) return
  const wait = Math.max(5_000, stored.accessExpiresAt - Date.now() - REFRESH_MARGIN_MS)
  refreshTimer = setTimeout(() => {
    void refreshSession()
  }, Math.min(wait, 2_147_000_000))
}

export const useAuth = create<AuthState>((set, get) => ({
  status: tokens.get() ? 'loading' : 'anonymous',
  identity: null,
  profile: null,
  expired: false,
  async init() {
    if (!tokens.get()) {
      set({ status: 'anonymous' })
      return
    }
    try {
      const identity = await api.verify()
      set({ identity, status: 'authenticated', expired: false })
      scheduleRefresh()
      void get().loadProfile()
    } catch (error) {
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) tokens.clear()
      set({ status: tokens.get() ? 'authenticated' : 'anonymous' })
    }
  },
  async login(username, password) {
    await api.login(username, password)
    const identity = await api.verify()
    set({ identity, status: 'authenticated', expired: false })
    scheduleRefresh()
    void get().loadProfile()
  },
  async logout() {
    await api.logout()
    set({ identity: null, profile: null, status: 'anonymous', expired: false })
  },
  async loadProfile() {
    try {
      const profile = await api.me()
      set({ profile })
      const language = profile.settings.language
      if ((language === 'en' || language === 'ko') && !hasSavedLanguage()) useUi.getState().setLanguage(language)
    } catch {
      /* shown as defaults */
    }
  },
  setProfile(profile) {
    set({ profile })
  },
}))

tokens.subscribe((stored) => {
  if (stored) {
    scheduleRefresh()
    return
  }
  if (refreshTimer) clearTimeout(refreshTimer)
  const state = useAuth.getState()
  if (state.status === 'authenticated') {
    useAuth.setState({ status: 'anonymous', identity: null, profile: null, expired: true })
  }
})
