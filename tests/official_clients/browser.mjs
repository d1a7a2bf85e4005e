// The little of a browser page the official tutorials touch: elements by id (values, click
// listeners, rendered HTML), sessionStorage, window, and a CanvasJS stand-in that records the data
// points it is asked to draw.  fetch and WebSocket are Node's own (node --experimental-websocket).

class Element {
    constructor(id = '') {
        this.id = id
        this.value = ''
        this.style = {}
        this.innerHTML = ''
        this.innerText = ''
        this.children = []
        this.parent = null
        this.listeners = {}
    }
    get firstElementChild() { return this.children[0] || null }
    append(child) { child.parent = this; this.children.push(child) }
    appendChild(child) { this.append(child) }
    replaceWith(other) {
        const siblings = this.parent.children
        other.parent = this.parent
        siblings[siblings.indexOf(this)] = other
    }
    addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn) }
    removeEventListener(type, fn) {
        const list = this.listeners[type] || []
        if (list.includes(fn)) list.splice(list.indexOf(fn), 1)
    }
    async click() { for (const fn of [...(this.listeners.click || [])]) await fn({ type: 'click' }) }
    get html() { return this.innerHTML + this.children.map(c => c.html).join('') }
}

const elements = new Map()
const storage = new Map()
export const charts = []  // every CanvasJS.StockChart made: { container, points (the live array), renders }

globalThis.window = globalThis
globalThis.document = {
    getElementById(id) {
        if (!elements.has(id)) elements.set(id, new Element(id))
        return elements.get(id)
    },
    createElement() { return new Element() },
}
globalThis.sessionStorage = {
    getItem: k => (storage.has(k) ? storage.get(k) : null),
    setItem: (k, v) => storage.set(k, String(v)),
    removeItem: k => storage.delete(k),
}
globalThis.CanvasJS = {
    StockChart: function StockChart(container, options) {
        const chart = { container, points: options.charts[0].data[0].dataPoints, renders: 0 }
        charts.push(chart)
        this.render = () => { chart.renders += 1 }
    },
}

export const $ = id => document.getElementById(id)
