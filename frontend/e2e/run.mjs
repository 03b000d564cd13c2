#!/usr/bin/env node
// End-to-end suite: Debian's Chromium (never a downloaded browser) driven by
// playwright-core against a running chatgate gateway that serves the built UI.
//
//   CHATGATE_E2E_URL        where the UI is served (default http://127.0.0.1:8080)
//   CHATGATE_E2E_USER       an admin account (default admin)
//   CHATGATE_E2E_PASSWORD   its password (required)
//   CHATGATE_E2E_CHROMIUM   browser binary (default /usr/bin/chromium)
//   CHATGATE_E2E_HEADED=1   show the browser
//
// Screenshots go to e2e/screenshots/ (git-ignored). Exit status 1 on any failure.

import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const BASE = (process.env.CHATGATE_E2E_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '')
const USER = process.env.CHATGATE_E2E_USER ?? 'admin'
const PASSWORD = process.env.CHATGATE_E2E_PASSWORD
const EXECUTABLE = process.env.CHATGATE_E2E_CHROMIUM ?? '/usr/bin/chromium'
const SHOTS = join(here, 'screenshots')
const XSS = JSON.parse(readFileSync(join(here, 'xss-corpus.json'), 'utf8'))
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8')
const ORIGIN = new URL(BASE).origin
const KOREAN = '안녕하세요! 오늘 날씨 어때요?'
const LONG_PROMPT = 'Write a very long story about a dragon and a knight, with ten chapters, each with many paragraphs.'

if (!PASSWORD) {
  console.error('CHATGATE_E2E_PASSWORD is required (and CHATGATE_E2E_URL, CHATGATE_E2E_USER)')
  process.exit(2)
}

rmSync(SHOTS, { recursive: true, force: true })
mkdirSync(SHOTS, { recursive: true })

const results = []
const problems = [] // CSP violations, foreign requests, dialogs, page errors
const a11y = [] // serious/critical axe violations, reported at the end so the flow goes on
let shotIndex = 0

async function step(name, fn) {
  const started = Date.now()
  process.stdout.write(`• ${name} … `)
  try {
    await fn()
    results.push({ name, ok: true })
    console.log(`ok (${((Date.now() - started) / 1000).toFixed(1)}s)`)
  } catch (error) {
    results.push({ name, ok: false, error })
    console.log('FAILED')
    console.log(`  ${String(error?.stack ?? error).split('\n').slice(0, 6).join('\n  ')}`)
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message)
}

async function shot(page, name, options = {}) {
  shotIndex += 1
  const file = join(SHOTS, `${String(shotIndex).padStart(2, '0')}-${name}.png`)
  const { tall, ...rest } = options
  const viewport = page.viewportSize()
  if (tall && viewport) {
    // The app scrolls inside its panes, so a "full page" shot needs a taller window.
    const height = await page.evaluate(() =>
      Math.max(...Array.from(document.querySelectorAll('main .overflow-y-auto')).map((el) => el.scrollHeight + 64), window.innerHeight),
    )
    await page.setViewportSize({ width: viewport.width, height: Math.min(height, 4000) })
    await page.waitForTimeout(100)
  }
  await page.screenshot({ path: file, ...rest })
  if (tall && viewport) await page.setViewportSize(viewport)
  return file
}

/** Watches a page for anything model output must never cause. */
function guard(page, label) {
  page.on('dialog', async (dialog) => {
    problems.push(`${label}: dialog "${dialog.message()}"`)
    await dialog.dismiss().catch(() => undefined)
  })
  page.on('pageerror', (error) => problems.push(`${label}: page error ${error.message}`))
  page.on('request', (request) => {
    const url = request.url()
    if (url.startsWith('data:') || url.startsWith('blob:')) return
    if (new URL(url).origin !== ORIGIN) problems.push(`${label}: request to another origin ${url}`)
  })
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.push(`${label}: CSP ${message.text()}`)
  })
}

async function axe(page, label) {
  await page.evaluate(AXE) // evaluate() is not subject to the page's CSP
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] })
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 4).map((n) => `${n.target.join(' ')} ${n.failureSummary?.split('\n').slice(1, 2).join('') ?? ''}`),
    }))
  })
  const blocking = result.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  for (const v of result.filter((v) => !blocking.includes(v))) console.log(`    axe (${label}) ${v.impact}: ${v.id} — ${v.help}`)
  for (const v of blocking) a11y.push(`${label}: ${v.impact} ${v.id} — ${v.help}\n      ${v.nodes.join('\n      ')}`)
}

async function lastAssistant(page) {
  return page.locator('[data-role="assistant"]').last()
}

async function waitStatus(page, statuses, timeout = 120_000) {
  await page.waitForFunction(
    (wanted) => {
      const all = document.querySelectorAll('[data-role="assistant"]')
      const last = all[all.length - 1]
      return !!last && wanted.includes(last.getAttribute('data-status'))
    },
    statuses,
    { timeout },
  )
}

async function assistantText(page) {
  return page.evaluate(() => {
    const all = document.querySelectorAll('[data-role="assistant"] .markdown')
    return all[all.length - 1]?.textContent ?? ''
  })
}

async function api(page, method, path, body) {
  return page.evaluate(
    async ({ method, path, body }) => {
      const stored = JSON.parse(localStorage.getItem('chatgate.tokens') ?? '{}')
      const response = await fetch(path, {
        method,
        headers: { Authorization: `Bearer ${stored.accessToken}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
      const text = await response.text()
      let json = null
      try {
        json = JSON.parse(text)
      } catch {
        /* not JSON */
      }
      return { status: response.status, json }
    },
    { method, path, body },
  )
}

/** A conversation with an answer (for the look-and-feel steps when an earlier step failed). */
async function anyConversation(page) {
  const list = await api(page, 'GET', '/api/conversations?limit=20')
  for (const conversation of list.json?.conversations ?? []) {
    const detail = await api(page, 'GET', `/api/conversations/${conversation.id}`)
    if (detail.json?.messages?.some((m) => m.role === 'assistant' && m.content)) return conversation.id
  }
  throw new Error('no conversation with an answer')
}

function conversationIdOf(page) {
  const match = /\/c\/([^/?#]+)/.exec(new URL(page.url()).pathname)
  return match ? decodeURIComponent(match[1]) : null
}

async function unsafeDom(page) {
  return page.evaluate(() => {
      const out = []
      const root = document.querySelector('main')
      for (const el of root.querySelectorAll('*')) {
        for (const attr of el.attributes) {
          if (attr.name.startsWith('on')) out.push(`${el.tagName}[${attr.name}]`)
          if (/^\s*(javascript|vbscript|data):/i.test(attr.value) && ['href', 'src', 'action', 'data', 'srcdoc'].includes(attr.name)) out.push(`${el.tagName}[${attr.name}=${attr.value}]`)
        }
      }
      for (const el of root.querySelectorAll('script, iframe, object, embed, style, link, meta, form:not([class]), math, video, audio')) out.push(el.tagName)
      for (const img of root.querySelectorAll('img')) if (!img.getAttribute('src')?.startsWith('/')) out.push(`img ${img.getAttribute('src')}`)
      return out
    })
}

async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true })
  await box.fill(text)
  // The composer holds the text while a conversation is still loading (slow machine):
  // press Enter until it takes the message, which empties the box.
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    await box.press('Enter')
    for (let i = 0; i < 10; i++) {
      if ((await box.inputValue()) === '') return
      await page.waitForTimeout(50)
    }
  }
  throw new Error(`the composer did not send: ${text.slice(0, 40)}`)
}

async function setMaxTokens(page, value) {
  await page.getByRole('button', { name: 'Chat options' }).click()
  await page.getByLabel('Max tokens').fill(String(value))
  await page.getByRole('dialog').getByRole('button', { name: 'Close', exact: true }).last().click()
}

const browser = await chromium.launch({
  executablePath: EXECUTABLE,
  headless: process.env.CHATGATE_E2E_HEADED !== '1',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'].filter(
    (a) => a !== '--headless' || process.env.CHATGATE_E2E_HEADED !== '1',
  ),
})

const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', colorScheme: 'light', reducedMotion: 'reduce' })
const page = await context.newPage()
page.setDefaultTimeout(20_000)
guard(page, 'desktop')

let firstConversation = null
let stoppedConversation = null

try {
  await step('login page renders, is accessible, and signs in', async () => {
    const response = await page.goto(`${BASE}/`)
    assert(response && response.ok(), `GET / answered ${response?.status()}`)
    await page.getByLabel('Username').waitFor()
    await axe(page, 'login')
    await shot(page, 'login')
    await page.getByLabel('Username').fill(USER)
    await page.getByLabel('Password').fill('wrong-password')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('alert').waitFor()
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByLabel('Message', { exact: true }).waitFor()
  })

  await step('send a Korean message and see the streamed answer', async () => {
    await send(page, KOREAN)
    await page.locator('[data-role="user"]', { hasText: KOREAN }).waitFor()
    await page.waitForURL(/\/c\//)
    firstConversation = conversationIdOf(page)
    await waitStatus(page, ['complete'])
    const text = await assistantText(page)
    assert(text.trim().length > 0, 'empty answer')
    const stored = await api(page, 'GET', `/api/conversations/${firstConversation}`)
    assert(stored.json.messages.some((m) => m.role === 'user' && m.content === KOREAN), 'Korean text did not round-trip')
    await axe(page, 'chat')
    await shot(page, 'chat-answer')
  })

  await step('rate an answer: thumbs up, then a corrected answer, stored on the server', async () => {
    const conversation = firstConversation ?? (await anyConversation(page))
    if (conversationIdOf(page) !== conversation) await page.goto(`${BASE}/c/${encodeURIComponent(conversation)}`)
    const answer = await lastAssistant(page)
    const up = answer.getByRole('button', { name: 'Good answer' })
    await up.click()
    await page.waitForFunction(() => {
      const all = document.querySelectorAll('[data-role="assistant"]')
      return all[all.length - 1]?.querySelector('button[aria-label="Good answer"]')?.getAttribute('aria-pressed') === 'true'
    })
    const messageId = Number(await answer.getAttribute('data-message-id'))
    let stored = await api(page, 'GET', `/api/conversations/${conversation}/feedback`)
    assert(stored.status === 200 && stored.json.feedback.some((f) => f.message_id === messageId && f.rating === 'up'), `rating not stored: ${JSON.stringify(stored.json)}`)
    await answer.getByRole('button', { name: 'Suggest a better answer' }).click()
    const dialog = page.getByRole('dialog', { name: 'A better answer' })
    await dialog.getByLabel('Corrected answer').fill('E2E corrected answer')
    await axe(page, 'feedback-dialog')
    await shot(page, 'feedback-dialog')
    await dialog.getByRole('button', { name: 'Save correction' }).click()
    await dialog.waitFor({ state: 'detached' })
    await answer.getByRole('button', { name: 'Edit your corrected answer' }).waitFor()
    stored = await api(page, 'GET', `/api/conversations/${conversation}/feedback`)
    const row = stored.json.feedback.find((f) => f.message_id === messageId)
    assert(row?.rating === 'up' && row?.correction === 'E2E corrected answer', `correction not stored: ${JSON.stringify(row)}`)
    // Reloaded, the page shows the stored rating.
    await page.reload()
    await page.locator(`[data-message-id="${messageId}"] button[aria-label="Good answer"][aria-pressed="true"]`).waitFor()
  })

  await step('a long answer streams and Stop really stops it', async () => {
    await page.getByRole('button', { name: 'New chat' }).click()
    await setMaxTokens(page, 2000)
    await send(page, LONG_PROMPT)
    await page.waitForFunction(() => {
      const all = document.querySelectorAll('[data-role="assistant"]')
      const last = all[all.length - 1]
      return last?.getAttribute('data-status') === 'pending' && (last.textContent ?? '').length > 120
    }, undefined, { timeout: 60_000 })
    const partial = (await assistantText(page)).length
    await page.waitForFunction((n) => {
      const all = document.querySelectorAll('[data-role="assistant"] .markdown')
      return (all[all.length - 1]?.textContent ?? '').length > n
    }, partial, { timeout: 30_000 })
    await shot(page, 'chat-streaming')
    await page.getByRole('button', { name: 'Stop generating' }).click()
    await waitStatus(page, ['interrupted'], 30_000)
    await (await lastAssistant(page)).getByText('Stopped').waitFor()
    stoppedConversation = conversationIdOf(page)
    const stored = await api(page, 'GET', `/api/conversations/${stoppedConversation}`)
    const answer = stored.json.messages.filter((m) => m.role === 'assistant').at(-1)
    assert(answer.status === 'interrupted', `stored status ${answer.status}`)
    assert(!stored.json.active_generation_id, 'generation still running after stop')
    await shot(page, 'chat-stopped')
  })

  await step('reload mid-answer resumes the running generation without duplicates', async () => {
    await page.getByRole('button', { name: 'New chat' }).click()
    await setMaxTokens(page, 300)
    await send(page, LONG_PROMPT)
    await page.waitForURL(/\/c\//)
    await page.waitForFunction(() => (document.querySelector('[data-role="assistant"]')?.textContent ?? '').length > 40, undefined, { timeout: 90_000 })
    const id = conversationIdOf(page)
    const before = (await assistantText(page)).length
    await page.reload()
    // After the reload the answer is still being written, and keeps growing.
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-role="assistant"]')
      return el?.getAttribute('data-status') === 'pending' && (el.textContent ?? '').length > 0
    }, undefined, { timeout: 30_000 })
    await page.waitForFunction((n) => (document.querySelector('[data-role="assistant"] .markdown')?.textContent ?? '').length > n, before, { timeout: 60_000 })
    await shot(page, 'chat-resumed')
    await waitStatus(page, ['complete'], 240_000)
    const shown = await page.evaluate(() => {
      // The rendered text of the streamed answer vs. the stored one, whitespace-insensitive.
      return document.querySelector('[data-role="assistant"] .markdown')?.textContent ?? ''
    })
    const stored = await api(page, 'GET', `/api/conversations/${id}`)
    const answer = stored.json.messages.find((m) => m.role === 'assistant')
    const words = (s) => s.replace(/[`*_#>|\-\s]+/g, '')
    assert(words(shown).length > 0 && words(answer.content).startsWith(words(shown).slice(0, 40)), 'shown text differs from the stored answer')
    assert(Math.abs(words(shown).length - words(answer.content).length) < Math.max(20, words(answer.content).length * 0.1), `length mismatch: shown ${words(shown).length}, stored ${words(answer.content).length}`)
  })

  await step('find the conversation by search, rename and delete it', async () => {
    assert(firstConversation, 'no conversation from the first step')
    const search = page.getByLabel('Search conversations')
    await search.fill('날씨')
    const item = page.locator(`li[data-conversation-id="${firstConversation}"]`)
    await item.waitFor()
    await page.waitForFunction(
      (id) => {
        const items = Array.from(document.querySelectorAll('li[data-conversation-id]'))
        return items.length > 0 && items.every((li) => li.getAttribute('data-conversation-id') === id)
      },
      firstConversation,
      { timeout: 10_000 },
    )
    await shot(page, 'sidebar-search')
    await item.hover()
    await item.getByRole('button', { name: /^Rename/ }).click()
    const title = page.getByLabel('New title')
    await title.fill('E2E 날씨 renamed')
    await title.press('Enter')
    await item.getByRole('link', { name: 'E2E 날씨 renamed' }).waitFor()
    const renamed = await api(page, 'GET', `/api/conversations/${firstConversation}`)
    assert(renamed.json.title === 'E2E 날씨 renamed', `title is ${renamed.json.title}`)
    await item.hover()
    await item.getByRole('button', { name: /^Delete/ }).click()
    const dialog = page.getByRole('dialog', { name: 'Delete conversation?' })
    await dialog.waitFor()
    await shot(page, 'sidebar-delete-confirm')
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click()
    await item.waitFor({ state: 'detached' })
    const gone = await api(page, 'GET', `/api/conversations/${firstConversation}`)
    assert(gone.status === 404, `deleted conversation answered ${gone.status}`)
    await search.fill('')
    await page.locator('li[data-conversation-id]').first().waitFor()
  })

  await step('XSS corpus as stored model output and as user input executes and fetches nothing', async () => {
    const imported = await api(page, 'POST', '/api/conversations/import', {
      title: 'XSS corpus',
      messages: [
        { role: 'user', content: XSS.join('\n\n') },
        { role: 'assistant', content: XSS.join('\n\n') },
      ],
    })
    assert(imported.status === 201, `import answered ${imported.status}`)
    await page.goto(`${BASE}/c/${imported.json.id}`)
    await page.locator('[data-role="assistant"]').waitFor()
    await page.getByRole('button', { name: 'Show address' }).first().click()
    await page.waitForTimeout(500)
    const findings = await unsafeDom(page)
    assert(findings.length === 0, `unsafe DOM: ${findings.join(', ')}`)
    await shot(page, 'xss-corpus', { fullPage: false })
    await page.getByRole('button', { name: 'New chat' }).click()
    await setMaxTokens(page, 24)
    const payload = '<img src=x onerror=alert(1)> <script>alert(2)</script> ![x](http://evil.example/?q=secret)'
    await send(page, payload)
    await page.locator('[data-role="user"]', { hasText: '<script>alert(2)</script>' }).waitFor()
    await waitStatus(page, ['complete', 'error'], 180_000)
    await page.waitForTimeout(300)
  })

  await step('XSS corpus streamed as model output through an engine executes and fetches nothing', async () => {
    const created = await api(page, 'POST', '/api/conversations', { title: 'Streamed XSS', model: 'xss-fake' })
    assert(created.status === 201, `create answered ${created.status}`)
    await page.goto(`${BASE}/c/${created.json.id}`)
    await send(page, 'Show me the corpus')
    await waitStatus(page, ['complete'], 60_000)
    const answer = await page.locator('[data-role="assistant"]').last().textContent()
    assert(answer.includes('alert(1)'), 'the streamed corpus should be shown as text')
    const findings = await unsafeDom(page)
    assert(findings.length === 0, `unsafe DOM: ${findings.join(', ')}`)
    await shot(page, 'xss-streamed', { fullPage: false })
  })

  await step('settings: create an API key (shown once) and use it with curl', async () => {
    await page.getByRole('link', { name: 'Settings' }).click()
    await page.getByRole('heading', { name: 'API keys' }).waitFor()
    await page.getByLabel('Key name').fill('e2e key')
    await page.getByRole('button', { name: 'Create key' }).click()
    const key = (await page.getByTestId('new-api-key').textContent()).trim()
    assert(key.startsWith('sk-'), `unexpected key ${key.slice(0, 6)}`)
    await page.locator('tr', { hasText: 'e2e key' }).waitFor()
    await axe(page, 'settings')
    await shot(page, 'settings', { tall: true })
    // the key works for programs: curl, as a user would paste it
    const models = JSON.parse(execFileSync('curl', ['-sSf', `${BASE}/v1/models`, '-H', `Authorization: Bearer ${key}`], { encoding: 'utf8' }))
    assert(models.data.some((m) => m.id === 'smollm2-135m'), 'curl /v1/models lists the model')
    const completion = JSON.parse(execFileSync('curl', ['-sSf', `${BASE}/v1/chat/completions`,
      '-H', `Authorization: Bearer ${key}`, '-H', 'Content-Type: application/json',
      '-d', JSON.stringify({ model: 'default', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 })],
    { encoding: 'utf8' }))
    assert(typeof completion.choices?.[0]?.message?.content === 'string', 'no completion content from curl')
  })

  await step('admin: users and usage pages', async () => {
    await page.getByRole('link', { name: 'Users' }).click()
    await page.locator('tr[data-user]').first().waitFor()
    await axe(page, 'admin-users')
    await shot(page, 'admin-users', { tall: true })
    await page.getByRole('link', { name: 'Usage' }).click()
    await page.getByRole('heading', { name: 'Usage', level: 1 }).waitFor()
    await page.waitForFunction(() => !document.body.textContent?.includes('Loading…'))
    await axe(page, 'admin-usage')
    await shot(page, 'admin-usage')
  })

  await step('admin: models page lists the profiles with their hardware verdicts and live engines', async () => {
    // Looks only: a switch would stop the engine the rest of the suite uses.
    await page.getByRole('link', { name: 'Models' }).click()
    await page.getByRole('heading', { name: 'Model profiles' }).waitFor()
    const smol = page.locator('[data-model="smollm2-135m"]')
    await smol.waitFor()
    const status = await smol.getAttribute('data-status')
    assert(status === 'active' || status === 'ready', `smollm2-135m is ${status}`)
    const deepseek = page.locator('[data-model="deepseek-r1-distill-qwen-14b"]')
    await deepseek.waitFor()
    const verdict = deepseek.locator('[data-verdict]')
    assert((await verdict.getAttribute('data-verdict')) === 'no_gpu', `deepseek verdict ${await verdict.getAttribute('data-verdict')}`)
    await verdict.getByText('No GPU', { exact: true }).waitFor()
    assert(await deepseek.getByRole('button', { name: /^Switch to / }).isVisible(), 'no Switch button on a profile')
    await deepseek.getByRole('switch', { name: /^Enabled: / }).waitFor()
    await page.locator('[data-engine]').first().waitFor()
    await page.getByRole('heading', { name: 'Engines' }).waitFor()
    // the numbers behind the verdict
    await verdict.getByText('Memory estimate').click()
    await verdict.getByText('Weights', { exact: true }).waitFor()
    await page.evaluate(() => document.querySelector('main .overflow-y-auto')?.scrollTo(0, 0))
    await axe(page, 'admin-models')
    await shot(page, 'admin-models', { tall: true })
    // the compatibility check for other hardware (read-only)
    await page.getByLabel('Profile', { exact: true }).selectOption('deepseek-r1-distill-qwen-14b')
    await page.getByLabel('GPUs', { exact: true }).fill('2')
    await page.getByLabel('Memory per GPU', { exact: true }).fill('24GiB')
    await page.getByRole('button', { name: 'Check', exact: true }).click()
    const result = page.getByTestId('check-result')
    await result.waitFor()
    const checked = await result.locator('[data-verdict]').getAttribute('data-verdict')
    assert(['fits', 'fits_with_tp', 'does_not_fit'].includes(checked), `2×24GiB verdict ${checked}`)
    await result.scrollIntoViewIfNeeded()
    await shot(page, 'admin-models-check')
  })

  await step('admin: feedback rates on the usage page, and a dataset export with hash and counts', async () => {
    await page.getByRole('link', { name: 'Usage' }).click()
    await page.getByRole('heading', { name: 'Answer ratings per model' }).waitFor()
    await page.locator('tr[data-model="smollm2-135m"]').waitFor()
    // The conversation rated above was deleted by the search step since: rate one that remains.
    const kept = await anyConversation(page)
    const detail = await api(page, 'GET', `/api/conversations/${kept}`)
    const answer = detail.json.messages.filter((m) => m.role === 'assistant' && m.content).at(-1)
    const rated = await api(page, 'PUT', `/api/conversations/${kept}/messages/${answer.id}/feedback`, { rating: 'up' })
    assert(rated.status === 200, `rating answered ${rated.status}`)
    await page.getByRole('link', { name: 'Models' }).click()
    const panel = page.getByRole('region', { name: 'Training datasets' }).or(page.locator('section[aria-labelledby="datasets-title"]')).first()
    await panel.getByRole('button', { name: 'Export dataset' }).click()
    const result = page.getByTestId('dataset-result')
    await result.waitFor()
    const text = await result.textContent()
    assert(/sha256:[0-9a-f]{64}/.test(text ?? ''), `no hash in ${text}`)
    const train = Number(await result.locator('[data-count="train"]').textContent())
    const heldout = Number(await result.locator('[data-count="heldout"]').textContent())
    assert(train + heldout >= 1, `the rated answer is not in the dataset: ${text}`)
    await result.scrollIntoViewIfNeeded()
    await axe(page, 'admin-datasets')
    await shot(page, 'admin-datasets')
  })

  await step('admin: hardware page shows the no-GPU state', async () => {
    await page.getByRole('link', { name: 'Hardware' }).click()
    await page.getByRole('heading', { name: 'Hardware', level: 1 }).waitFor()
    const empty = page.getByTestId('no-gpu')
    await empty.waitFor()
    await empty.getByRole('heading', { name: 'No GPU detected' }).waitFor()
    const hardware = await api(page, 'GET', '/api/admin/hardware')
    assert(hardware.status === 200 && hardware.json.available === false, `hardware answered ${hardware.status} ${JSON.stringify(hardware.json)}`)
    if (hardware.json.message) await empty.getByText(hardware.json.message).waitFor()
    await axe(page, 'admin-hardware')
    await shot(page, 'admin-hardware')
  })

  await step('admin: fine-tuning page shows the form and jobs; an impossible job is refused with a message', async () => {
    await page.getByRole('link', { name: 'Fine-tuning' }).click()
    await page.getByRole('heading', { name: 'Fine-tuning', level: 1 }).waitFor()
    const form = page.getByRole('form', { name: 'Start a LoRA job' })
    await form.waitFor()
    await page.getByRole('heading', { name: 'Jobs' }).waitFor()
    const listed = await api(page, 'GET', '/api/admin/finetune/jobs')
    assert(listed.status === 200, `jobs answered ${listed.status}`)
    // A dataset that does not exist: the API refuses (400) before any training starts.
    await form.getByLabel('Dataset').fill('no-such-dataset-e2e')
    await form.getByLabel('Max steps').fill('1')
    await form.getByRole('button', { name: 'Start job' }).click()
    const error = page.getByTestId('finetune-error')
    await error.waitFor()
    const text = (await error.textContent()) ?? ''
    assert(/no-such-dataset-e2e/.test(text), `no refusal shown: ${text}`)
    const after = await api(page, 'GET', '/api/admin/finetune/jobs')
    assert(after.json.jobs.length === listed.json.jobs.length, 'a job was started')
    await page.getByRole('heading', { name: 'A/B split' }).waitFor()
    await axe(page, 'admin-finetune')
    await shot(page, 'admin-finetune')
  })

  await step('keyboard: options dialog opens, traps focus and closes with Escape', async () => {
    await page.getByRole('button', { name: 'New chat' }).click()
    await page.getByRole('button', { name: 'Chat options' }).focus()
    await page.keyboard.press('Enter')
    const dialog = page.getByRole('dialog', { name: 'Chat options' })
    await dialog.waitFor()
    await axe(page, 'chat-options')
    await shot(page, 'chat-options')
    for (let i = 0; i < 12; i++) await page.keyboard.press('Tab')
    assert(await page.evaluate(() => !!document.activeElement?.closest('[role="dialog"]')), 'focus left the dialog')
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })
  })

  await step('dark mode', async () => {
    await page.getByRole('radio', { name: 'Dark' }).click()
    await page.goto(`${BASE}/c/${stoppedConversation ?? (await anyConversation(page))}`)
    await page.locator('[data-role="assistant"]').first().waitFor()
    await axe(page, 'chat-dark')
    await shot(page, 'chat-dark')
    await page.goto(`${BASE}/admin/models`)
    await page.locator('[data-model="deepseek-r1-distill-qwen-14b"] [data-verdict]').waitFor()
    await page.locator('[data-engine]').first().waitFor()
    await axe(page, 'admin-models-dark')
    await shot(page, 'admin-models-dark')
    await page.getByRole('radio', { name: 'Light' }).click()
  })
} finally {
  await context.close()
}

// Phone width, Korean browser.
const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, locale: 'ko-KR', isMobile: true, hasTouch: true, reducedMotion: 'reduce' })
const mobile = await phone.newPage()
mobile.setDefaultTimeout(20_000)
guard(mobile, 'phone')
try {
  await step('phone width (360px), Korean by browser language', async () => {
    await mobile.goto(`${BASE}/`)
    await mobile.getByLabel('사용자 이름').fill(USER)
    await mobile.getByLabel('비밀번호').fill(PASSWORD)
    await shot(mobile, 'phone-login-ko')
    await mobile.getByRole('button', { name: '로그인' }).click()
    const box = mobile.getByLabel('메시지', { exact: true })
    await box.waitFor()
    await mobile.goto(`${BASE}/c/${stoppedConversation ?? (await anyConversation(mobile))}`)
    await mobile.locator('[data-role="assistant"]').first().waitFor()
    const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert(overflow <= 0, `page is ${overflow}px wider than the screen`)
    await axe(mobile, 'phone-chat')
    await shot(mobile, 'phone-chat')
    await mobile.getByRole('button', { name: '사이드바 열기' }).click()
    await mobile.getByRole('button', { name: '새 채팅' }).waitFor()
    await shot(mobile, 'phone-sidebar')
    await mobile.keyboard.press('Escape')
    await mobile.getByRole('button', { name: '사이드바 열기' }).click()
    await mobile.getByRole('link', { name: '설정' }).click()
    await mobile.getByRole('heading', { name: 'API 키' }).waitFor()
    const settingsOverflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert(settingsOverflow <= 0, `settings page is ${settingsOverflow}px wider than the screen`)
    await shot(mobile, 'phone-settings', { tall: true })
  })
  await step('phone width (360px), Korean: models and hardware pages fit', async () => {
    await mobile.goto(`${BASE}/admin/models`)
    await mobile.getByRole('heading', { name: '모델 프로필' }).waitFor()
    await mobile.locator('[data-model="deepseek-r1-distill-qwen-14b"] [data-verdict="no_gpu"]').getByText('GPU 없음', { exact: true }).waitFor()
    await mobile.locator('[data-engine]').first().waitFor()
    const overflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert(overflow <= 0, `models page is ${overflow}px wider than the screen`)
    await axe(mobile, 'phone-models')
    await shot(mobile, 'phone-models', { tall: true })
    await mobile.goto(`${BASE}/admin/hardware`)
    await mobile.getByTestId('no-gpu').getByRole('heading', { name: 'GPU를 찾지 못했습니다' }).waitFor()
    const hardwareOverflow = await mobile.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert(hardwareOverflow <= 0, `hardware page is ${hardwareOverflow}px wider than the screen`)
    await shot(mobile, 'phone-hardware')
  })
} finally {
  await phone.close()
  await browser.close()
}

await step('axe: no serious or critical accessibility violations', async () => {
  assert(a11y.length === 0, a11y.join('\n    '))
})

await step('no CSP violations, foreign requests, dialogs or page errors', async () => {
  assert(problems.length === 0, problems.join('\n'))
})

const failed = results.filter((r) => !r.ok)
console.log(`\n${results.length - failed.length}/${results.length} steps passed; screenshots in ${SHOTS}`)
console.log(`e2e: ${results.length - failed.length} passed, ${failed.length} failed`)
process.exit(failed.length ? 1 : 0)
