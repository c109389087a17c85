/// max |a[i] − b[i]| over the pairs both have (0 when either is empty): how far two runs of the
/// same computation drifted apart (merge and export checks, the tests' reference comparisons).
public func maxAbsDiff(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
