/// An insertion-ordered dictionary with Python-hashable keys.
struct OrderedDict {
    private(set) var keys: [Value] = []
    private(set) var values: [Value] = []
    private var index: [String: Int] = [:]

    init() {}
    init(_ pairs: [(Value, Value)]) { for (k, v) in pairs { self[k] = v } }

    var count: Int { keys.count }
    var pairs: [(Value, Value)] { Array(zip(keys, values)) }

    /// A hash key following Python equality for the hashable scalars (1 == 1.0 == True).
    static func hashKey(_ k: Value) -> String {
        switch k {
        case .string(let s): return "s" + s
        case .int(let i): return "n" + String(i)
        case .bool(let b): return "n" + (b ? "1" : "0")
        case .double(let d): return d == d.rounded() && abs(d) < 9e18 ? "n" + String(Int(d)) : "d" + String(d)
        case .none: return "N"
        default: return "?" + k.repr
        }
    }

    subscript(key: Value) -> Value? {
        get { index[Self.hashKey(key)].map { values[$0] } }
        set {
            let h = Self.hashKey(key)
            if let i = index[h] {
                if let newValue { values[i] = newValue } else { remove(at: i) }
            } else if let newValue {
                index[h] = keys.count
                keys.append(key)
                values.append(newValue)
            }
        }
    }

    subscript(name: String) -> Value? {
        get { self[.string(name)] }
        set { self[.string(name)] = newValue }
    }

    private mutating func remove(at i: Int) {
        keys.remove(at: i); values.remove(at: i)
        index = [:]
        for (k, key) in keys.enumerated() { index[Self.hashKey(key)] = k }
    }
}
