// Drives one official example client, unchanged, against the simulator and writes what it showed
// to a JSON report.  Configuration (JSON in HARNESS): scenario, entry (the sample's app.js /
// index.js), control (the simulator's control URL), report (a file path), and scenario values.
// Run: node --experimental-websocket --import ./register.mjs harness.mjs
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const cfg = JSON.parse(process.env.HARNESS)
const report = { scenario: cfg.scenario, errors: [] }
const log = []
const realLog = console.log.bind(console)
console.log = (...args) => { log.push(args.map(a => (typeof a === 'string' ? a : safeJson(a))).join(' ')) }
console.clear = () => {}
console.warn = console.log

function safeJson(value) { try { return JSON.stringify(value) } catch { return String(value) } }

const finish = code => {
    report.log_tail = log.slice(-40)
    writeFileSync(cfg.report, JSON.stringify(report, null, 1))
    process.exit(code)
}
process.on('unhandledRejection', err => { report.errors.push(`unhandled rejection: ${err && (err.stack || err)}`) })
process.on('uncaughtException', err => { report.errors.push(`uncaught: ${err && (err.stack || err)}`); finish(1) })
setTimeout(() => { report.errors.push('harness timed out'); finish(1) }, cfg.timeout_ms || 90000).unref()

const sleep = ms => new Promise(res => setTimeout(res, ms))
async function until(pred, what, ms = 30000) {
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
        const value = await pred()
        if (value) return value
        await sleep(25)
    }
    throw new Error(`timed out waiting for ${what}`)
}
async function setPrice(symbol, price) {
    const r = await fetch(`${cfg.control}/price`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                      body: JSON.stringify({ symbol, price }) })
    if (!r.ok) throw new Error(`control/price ${r.status}`)
}

async function tutorial() {
    const { $, charts } = await import('./browser.mjs')
    await import(pathToFileURL(cfg.entry).href)  // runs the app's main()
    const button = id => until(() => ($(id).listeners.click || []).length > 0 && $(id), `#${id} wired`)
    switch (cfg.scenario) {
    case 'EX-07a': {
        await (await button('connect-btn')).click()
        await (await button('request-btn')).click()
        report.outlet = $('outlet').html
        break
    }
    case 'EX-08a': {
        await (await button('connect-btn')).click()
        $('symbol').value = cfg.symbol
        await (await button('request-btn')).click()
        for (const price of cfg.prices) await setPrice(cfg.symbol, price)
        const last = cfg.prices[cfg.prices.length - 1]
        await until(() => $('outlet').html.includes(`price: ${last}<`), 'the last trade rendered')
        report.outlet = $('outlet').html
        await (await button('unsubscribe-btn')).click()
        break
    }
    case 'EX-09a': {
        await (await button('connect-btn')).click()
        $('sym1').value = cfg.symbol
        $('sym2').value = cfg.symbol
        await (await button('request-btn')).click()
        await (await button('subscribe-dom')).click()
        for (const price of cfg.prices) await setPrice(cfg.symbol, price)
        await until(() => $('outlet-2').html.includes(`price: ${cfg.best_bid}<`), 'the moved book rendered')
        report.outlet = $('outlet').html
        report.outlet2 = $('outlet-2').html
        break
    }
    case 'EX-10a':
    case 'EX-11a': {
        $('symbol').value = cfg.symbol
        $('type').value = cfg.type
        $('n-elements').value = String(cfg.elements)
        $('elem-size').value = String(cfg.size)
        // app.js connects its socket after wiring the button; its status dot turns green on the first frame
        await until(() => $('status').style.backgroundColor === 'green', 'the socket connected')
        await (await button('get-chart-btn')).click()
        await until(() => log.some(l => l.includes('end of history')), 'end of history')
        const chart = charts[charts.length - 1]
        report.history_points = chart.points.length
        report.first = chart.points[0]
        report.last = chart.points[chart.points.length - 1]
        for (const price of cfg.prices) await setPrice(cfg.symbol, price)
        await until(() => chart.points.length >= report.history_points + cfg.prices.length, 'live points')
        report.points = chart.points.length
        report.live = chart.points.slice(report.history_points)
        report.renders = chart.renders
        break
    }
    case 'FAQ-large-chart': {
        await until(() => charts.length > 0 && charts[0].renders > 0, 'the final render', 60000)
        const points = charts[0].points
        report.points = points.length
        report.xs = points.map(p => new Date(p.x).toJSON())
        report.bars = points.map(p => p.y)
        break
    }
    default:
        throw new Error(`unknown scenario ${cfg.scenario}`)
    }
}

async function tradingStrategy() {
    const require = createRequire(cfg.entry)
    // the only change to the sample: index.js's base URLs and credentials (as its comments ask)
    const Module = require('node:module')
    const compile = Module.prototype._compile
    Module.prototype._compile = function (content, filename) {
        for (const [suffix, pairs] of Object.entries(cfg.rewrites || {})) {
            if (filename.endsWith(suffix)) for (const [from, to] of pairs) content = content.split(from).join(to)
        }
        return compile.call(this, content, filename)
    }
    // observe (not change) what reaches the strategy: wrap the store's dispatch
    const dispatcherModule = require('./utils/dispatcher')
    const events = {}
    const original = dispatcherModule.dispatcher
    dispatcherModule.dispatcher = (...args) => {
        const store = original(...args)
        const dispatch = store.dispatch
        store.dispatch = (event, payload) => {
            events[event] = (events[event] || 0) + 1
            if (event === 'chart' && payload && payload.data) report.last_chart = payload.data
            if (event === 'quote' && payload && payload.data) report.last_quote = payload.data
            if (event === 'dom' && payload && payload.data) report.last_dom = payload.data
            return dispatch(event, payload)
        }
        return store
    }
    report.events = events
    // the keyboard: each question adds a stdin 'data' listener; answer it from the prompt it printed
    const down = '\x1b[B', enter = '\r'
    const script = [
        [/Press enter to/, [enter]],
        [/choose an account/, [enter]],
        [/Market Replay/, [down, enter]],
        [/Choose a contract to trade/, ['NQ', enter]],
        [/possible contracts/, [enter]],
        [/Choose a strategy/, [enter]],
        [/option for 'barType'/, [down, enter]],  // Tick
        [/parameter for 'barInterval'/, ['1', enter]],
        [/option for 'elementSizeUnit'/, [enter]],  // UnderlyingUnits
        [/option for 'histogram'/, [down, enter]],  // No
        [/option for 'timeRangeType'/, [enter]],  // asMuchAsElements
        [/parameter for 'timeRangeValue'/, ['20', enter]],
        [/parameter for 'longPeriod'/, ['10', enter]],
        [/parameter for 'shortPeriod'/, ['3', enter]],
        [/parameter for 'variancePeriod'/, ['5', enter]],
        [/parameter for 'orderQuantity'/, ['1', enter]],
        [/Is this information correct/, [enter]],
    ]
    report.answered = []
    const addListener = process.stdin.addListener.bind(process.stdin)
    process.stdin.addListener = (type, fn) => {
        const result = addListener(type, fn)
        if (type === 'data') setTimeout(async () => {
            const prompt = [...log].reverse().find(l => script.some(([re]) => re.test(l))) || ''
            const entry = script.find(([re]) => re.test(prompt))
            if (!entry) return
            report.answered.push(prompt.slice(0, 60))
            for (const key of entry[1]) {
                if (!process.stdin.listeners('data').includes(fn)) return
                fn(Buffer.from(key))
                await sleep(20)
            }
        }, 30)
        return result
    }
    require(cfg.entry)  // index.js: main()
    await until(() => events.chart && events.quote && events.dom && events.usersyncinit, 'md events at the strategy', 60000)
    const before = events.chart
    for (const price of cfg.prices) await setPrice(cfg.symbol, price)
    await until(() => events.chart >= before + cfg.prices.length, 'live chart events')
    report.chart_events = events.chart
}

try {
    if (cfg.scenario === 'trading-strategy') await tradingStrategy()
    else await tutorial()
    finish(report.errors.length ? 1 : 0)
} catch (err) {
    report.errors.push(String(err && (err.stack || err)))
    finish(1)
}
