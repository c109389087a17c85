import Foundation

/// A loss-curve chart as a standalone SVG: training loss per step (a line) and evaluation loss
/// (points), with labelled axes; an accuracy (MMLU's, when evaluated) on a right-hand axis.
public enum LossCurve {
    public static func svg(train: [(Int, Double)], eval: [(Int, Double)], accuracy: [(Int, Double)] = [],
                           accuracyLabel: String = "MMLU accuracy", width: Double = 720, height: Double = 400) -> String {
        let left = 60.0, right = accuracy.isEmpty ? 20.0 : 55.0, top = 30.0, bottom = 45.0
        let pw = width - left - right, ph = height - top - bottom
        let all = (train + eval).filter { $0.1.isFinite }
        let maxStep = max(1, (all + accuracy).map(\.0).max() ?? 1)
        var lo = all.map(\.1).min() ?? 0, hi = all.map(\.1).max() ?? 1
        if hi - lo < 1e-9 { lo -= 0.5; hi += 0.5 }
        let pad = (hi - lo) * 0.05
        lo = max(0, lo - pad); hi += pad
        func x(_ s: Int) -> Double { left + pw * Double(s) / Double(maxStep) }
        func y(_ v: Double) -> Double { top + ph * (1 - (v - lo) / (hi - lo)) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(left))" y="18" font-size="14">Finch training loss</text>

        """
        for i in 0...4 {   // horizontal grid and loss labels
            let v = lo + (hi - lo) * Double(i) / 4
            out += "<line x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\" stroke=\"#ddd\"/>"
            out += "<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", v))</text>\n"
        }
        for i in 0...4 {   // step labels
            let s = Int((Double(maxStep) * Double(i) / 4).rounded())
            out += "<text x=\"\(f(x(s)))\" y=\"\(f(top + ph + 18))\" text-anchor=\"middle\">\(s)</text>\n"
        }
        out += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 6))\" text-anchor=\"middle\">step</text>\n"
        out += "<line x1=\"\(f(left))\" x2=\"\(f(left))\" y1=\"\(f(top))\" y2=\"\(f(top + ph))\" stroke=\"#444\"/>"
        out += "<line x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(top + ph))\" y2=\"\(f(top + ph))\" stroke=\"#444\"/>\n"
        let points = train.filter { $0.1.isFinite }.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
        if !points.isEmpty {
            out += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"\(points)\"/>\n"
        }
        for (s, v) in eval where v.isFinite {
            out += "<circle cx=\"\(f(x(s)))\" cy=\"\(f(y(v)))\" r=\"4\" fill=\"#d62728\"/>\n"
        }
        out += "<text x=\"\(f(left + pw - 150))\" y=\"18\" fill=\"#1f77b4\">— train</text>"
        if !eval.isEmpty { out += "<text x=\"\(f(left + pw - 70))\" y=\"18\" fill=\"#d62728\">● eval</text>" }
        if !accuracy.isEmpty {   // right axis: 0 … 100 %
            func ya(_ a: Double) -> Double { top + ph * (1 - a) }
            for i in 0...4 {
                out += "<text x=\"\(f(left + pw + 6))\" y=\"\(f(ya(Double(i) / 4) + 4))\" fill=\"#2ca02c\">\(i * 25)%</text>"
            }
            let pts = accuracy.filter { $0.1.isFinite }
            out += "\n<polyline fill=\"none\" stroke=\"#2ca02c\" stroke-dasharray=\"5 3\" points=\""
                + pts.map { "\(f(x($0.0))),\(f(ya($0.1)))" }.joined(separator: " ") + "\"/>\n"
            for (s, a) in pts { out += "<rect x=\"\(f(x(s) - 3.5))\" y=\"\(f(ya(a) - 3.5))\" width=\"7\" height=\"7\" fill=\"#2ca02c\"/>\n" }
            out += "<text x=\"\(f(left + 6))\" y=\"\(f(top + 14))\" fill=\"#2ca02c\">■ \(accuracyLabel) (right axis)</text>"
        }
        return out + "\n</svg>\n"
    }
}
