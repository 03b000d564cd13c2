#!/usr/bin/env node
// A tiny OpenAI-compatible engine that streams the XSS corpus as its answer, so the
// e2e suite sees hostile model output arrive chunk by chunk through the real gateway.
//   node e2e/fake-engine.mjs PORT
import { createServer } from 'node:http'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const CORPUS = JSON.parse(readFileSync(join(here, 'xss-corpus.json'), 'utf8'))
const MODEL = 'xss-fake'
const port = Number(process.argv[2])

function chunk(delta, finish = null) {
  const body = { id: 'chatcmpl-xss', object: 'chat.completion.chunk', created: 0, model: MODEL,
    choices: [{ index: 0, delta, finish_reason: finish }] }
  return `data: ${JSON.stringify(body)}\n\n`
}

// Split every payload in two, so tags and links arrive cut across chunks.
const pieces = CORPUS.flatMap((payload) => {
  const text = `${payload}\n\n`
  const middle = Math.floor(text.length / 2)
  return [text.slice(0, middle), text.slice(middle)]
})

createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/v1/models') {
    response.writeHead(200, { 'Content-Type': 'application/json' })
    response.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model' }] }))
    return
  }
  let raw = ''
  request.on('data', (data) => { raw += data })
  request.on('end', async () => {
    const body = JSON.parse(raw || '{}')
    if (!body.stream) {
      response.writeHead(200, { 'Content-Type': 'application/json' })
      response.end(JSON.stringify({ id: 'chatcmpl-xss', object: 'chat.completion', model: MODEL,
        choices: [{ index: 0, message: { role: 'assistant', content: 'XSS corpus' }, finish_reason: 'stop' }] }))
      return
    }
    response.writeHead(200, { 'Content-Type': 'text/event-stream' })
    for (const piece of pieces) {
      response.write(chunk({ content: piece }))
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    response.write(chunk({}, 'stop'))
    response.end('data: [DONE]\n\n')
  })
}).listen(port, '127.0.0.1')
