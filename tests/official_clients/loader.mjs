// ESM loader hooks that let Node run the official browser samples as their bundler would:
// extensionless relative imports resolve to .js, every .js under the samples' root is an ES module,
// and a sample's configuration module (the FAQ's data.js) gets its base URLs and credentials
// replaced -- the only change the task allows.  Registered by register.mjs.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

let root = ''
let rewrites = {}

export async function initialize(data) {
    root = data.root
    rewrites = data.rewrites || {}
}

export async function resolve(specifier, context, next) {
    try {
        return await next(specifier, context)
    } catch (err) {
        if (err && err.code === 'ERR_MODULE_NOT_FOUND' && /^\.\.?\//.test(specifier) && !specifier.endsWith('.js')) {
            return next(specifier + '.js', context)
        }
        throw err
    }
}

export async function load(url, context, next) {
    if (url.startsWith('file:')) {
        const path = fileURLToPath(url)
        if (path.startsWith(root) && path.endsWith('.js')) {
            let source = readFileSync(path, 'utf8')
            for (const [suffix, pairs] of Object.entries(rewrites)) {
                if (path.endsWith(suffix)) {
                    for (const [from, to] of pairs) source = source.split(from).join(to)
                }
            }
            return { format: 'module', source, shortCircuit: true }
        }
    }
    return next(url, context)
}
