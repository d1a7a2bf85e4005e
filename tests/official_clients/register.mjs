// node --import ./register.mjs: hands the loader the samples' root and the base-URL rewrites
// (JSON in the environment variable SAMPLES_LOADER).
import { register } from 'node:module'

register('./loader.mjs', import.meta.url, { data: JSON.parse(process.env.SAMPLES_LOADER || '{}') })
