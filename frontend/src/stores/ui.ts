import { create } from 'zustand'

export type Language = 'en' | 'ko'
export type Theme = 'light' | 'dark' | 'system'

const KEY = 'chatgate.ui'

interface Persisted {
  language?: Language
  theme?: Theme
}

function load(): Persisted {
  try {
    return JSON.parse(globalThis.localStorage?.getItem(KEY) ?? '{}') as Persisted
  } catch {
    return {}
  }
}

/** The first English or Korean entry of the browser's languages (English otherwise). */
export function detectLanguage(languages: readonly string[] = globalThis.navigator?.languages ?? []): Language {
  for (const tag of languages) {
    const base = tag.toLowerCase().split('-')[0]
    if (base === 'ko') return 'ko'
    if (base === 'en') return 'en'
  }
  return 'en'
}

interface UiState {
  language: Language
  theme: Theme
  sidebarOpen: boolean
  toast: { id: number; text: string; kind: 'info' | 'error' } | null
  setLanguage(language: Language): void
  setTheme(theme: Theme): void
  setSidebarOpen(open: boolean): void
  notify(text: string, kind?: 'info' | 'error'): void
  dismissToast(): void
}

const saved = load()

/** Whether this browser has an explicit language choice (else the account's setting may apply). */
export const hasSavedLanguage = (): boolean => load().language !== undefined

function persist(state: Persisted): void {
  try {
    globalThis.localStorage?.setItem(KEY, JSON.stringify(state))
  } catch {
    /* ignore */
  }
}

let toastId = 0

export const useUi = create<UiState>((set, get) => ({
  language: saved.language === 'ko' || saved.language === 'en' ? saved.language : detectLanguage(),
  theme: saved.theme ?? 'system',
  sidebarOpen: false,
  toast: null,
  setLanguage(language) {
    set({ language })
    persist({ language, theme: get().theme })
  },
  setTheme(theme) {
    set({ theme })
    persist({ language: get().language, theme })
  },
  setSidebarOpen(sidebarOpen) {
    set({ sidebarOpen })
  },
  notify(text, kind = 'info') {
    const id = ++toastId
    set({ toast: { id, text, kind } })
    setTimeout(() => {
      if (get().toast?.id === id) set({ toast: null })
    }, 4000)
  },
  dismissToast() {
    set({ toast: null })
  },
}))

/** Applies theme and language to <html> (class `dark`, `lang`). */
export function applyDocumentSettings(theme: Theme, language: Language): void {
  const root = document.documentElement
  const dark = theme === 'dark' || (theme === 'system' && globalThis.matchMedia?.('(prefers-color-scheme: dark)').matches)
  root.classList.toggle('dark', Boolean(dark))
  root.lang = language
}
