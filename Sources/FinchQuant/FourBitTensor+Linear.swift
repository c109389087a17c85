import FinchCore

extension FourBitTensor: QuantizedMatrix {
    public func dequantize(into out: UnsafeMutablePointer<Float>) { dequantizeAll(into: out) }

    public func requantize(from values: UnsafePointer<Float>) -> Float {
        let fresh = try! FourBitTensor.quantize(UnsafeBufferPointer(start: values, count: count), shape: shape,
                                                type: type, blocksize: blocksize, doubleQuant: isDoubleQuantized)
        packed.pointer.update(from: fresh.packed.pointer, count: packed.count)
        scales = fresh.scales
        let back = dequantize()
        var err: Float = 0
        for i in 0..<count { err = max(err, abs(back[i] - values[i])) }
        return err
    }
}
