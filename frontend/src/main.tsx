import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import './index.css'
import { App } from './App'
import { applyDocumentSettings, useUi } from './stores/ui'

const { theme, language } = useUi.getState()
applyDocumentSettings(theme, language)

createRoot(document.getElementById('root') as HTMLElement).render(
  <StrictMode>
    <App />
  </StrictMode>,
)
