import { useCallback } from 'react'
import { en, type MessageKey } from './en'
import { ko } from './ko'
import { useUi, type Language } from '../stores/ui'

export { detectLanguage } from '../stores/ui'

export type { MessageKey } from './en'

const dictionaries: Record<Language, Record<MessageKey, string>> = { en, ko }

export const LANGUAGES: { code: Language; label: string }[] = [
  { code: 'en', label: 'English' },
  { code: 'ko', label: '한국어' },
]

export function translate(language: Language, key: MessageKey, vars?: Record<string, string | number>): string {
  const template = dictionaries[language][key] ?? en[key] ?? key
  if (!vars) return template
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole))
}

export type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string

export function useT(): Translate {
  const language = useUi((s) => s.language)
  return useCallback((key, vars) => translate(language, key, vars), [language])
}
