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

/// How a model's frozen linear layers are quantized (bitsandbytes' `BitsAndBytesConfig` with
/// `load_in_4bit`): type, block size, double quantization, and the precision products run in.
public struct QuantizationConfig: Sendable, Hashable, Codable {
    public var type: FourBitType
    public var blocksize: Int
    public var doubleQuant: Bool
    /// `bnb_4bit_compute_dtype`: f32, or bf16 (bf16 products, f32 accumulation).
    public var computeDType: WeightDType

    public init(type: FourBitType = .nf4, blocksize: Int = 64, doubleQuant: Bool = false, computeDType: WeightDType = .f32) {
        self.type = type; self.blocksize = blocksize; self.doubleQuant = doubleQuant; self.computeDType = computeDType
    }

    /// Throws for a block size bitsandbytes does not support.
    public func validate() throws {
        guard FourBitTensor.blocksizes.contains(blocksize) else { throw QuantError.invalidBlocksize(blocksize) }
    }

    /// A frozen linear weight `[out, in]` quantized from f32 values.
    public func linear(outFeatures: Int, inFeatures: Int, values: Buffer<Float>) throws -> LinearWeight {
        let q = try FourBitTensor.quantize(UnsafeBufferPointer(values.buffer), shape: [outFeatures, inFeatures],
                                           type: type, blocksize: blocksize, doubleQuant: doubleQuant)
        return LinearWeight(outFeatures: outFeatures, inFeatures: inFeatures, storage: .quantized(q, compute: computeDType))
    }

    public var summary: String {
        "\(type.rawValue), blocksize \(blocksize)\(doubleQuant ? ", double quantization" : ""), compute \(computeDType.rawValue)"
    }
}
