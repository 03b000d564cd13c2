// Static guarantees about the source: no raw-HTML escape hatches, CSP-clean index.html.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = join(__dirname, '..')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : [path]
  })
}

const sources = files(join(root, 'src')).filter((f) => /\.(ts|tsx)$/.test(f))

describe('source rules', () => {
  it('never uses dangerouslySetInnerHTML, innerHTML, outerHTML, insertAdjacentHTML or eval', () => {
    const forbidden = /dangerouslySetInnerHTML|\.innerHTML|\.outerHTML|insertAdjacentHTML|\beval\(|new Function\(|document\.write/
    const offenders = sources.filter((f) => forbidden.test(readFileSync(f, 'utf8')))
    expect(offenders).toEqual([])
  })

  it('does not render raw HTML from markdown', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string>>
    const deps = { ...pkg.dependencies, ...pkg.devDependencies }
    expect(Object.keys(deps)).not.toContain('rehype-raw')
    expect(sources.filter((f) => /from ['"]rehype-raw['"]|allowDangerousHtml/.test(readFileSync(f, 'utf8')))).toEqual([])
  })

  it('index.html has no inline script or style (strict CSP)', () => {
    const html = readFileSync(join(root, 'index.html'), 'utf8')
    expect(html).not.toMatch(/<style/i)
    expect(html).not.toMatch(/\sstyle=/i)
    expect(html).not.toMatch(/\son\w+=/i)
    for (const tag of html.match(/<script\b[^>]*>[\s\S]*?<\/script>/gi) ?? []) {
      expect(tag).toMatch(/\ssrc=/)
      expect(tag.replace(/<script\b[^>]*>/i, '').replace(/<\/script>/i, '').trim()).toBe('')
    }
  })

  it('has no <img> of a remote address in components', () => {
    const offenders = sources.filter((f) => /<img[^>]+src=["{]['"`]?https?:/.test(readFileSync(f, 'utf8')))
    expect(offenders).toEqual([])
  })
})
