import { create } from 'zustand'
import { api, type ModelInfo } from '../api'

interface ModelsState {
  models: ModelInfo[]
  defaultModel: string | null
  loaded: boolean
  error: string | null
  load(): Promise<void>
}

export const useModels = create<ModelsState>((set) => ({
  models: [],
  defaultModel: null,
  loaded: false,
  error: null,
  async load() {
    try {
      const list = await api.models()
      set({ models: list.models, defaultModel: list.default, loaded: true, error: null })
    } catch (error) {
      set({ loaded: true, error: error instanceof Error ? error.message : String(error) })
    }
  },
}))

export function findModel(models: ModelInfo[], id: string | null | undefined): ModelInfo | undefined {
  if (!id) return undefined
  return models.find((m) => m.id === id || m.aliases.includes(id))
}
