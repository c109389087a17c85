import FinchCore
import FinchFormats

// Dimension letters: N elements, B = ⌈N / blocksize⌉ blocks, B2 = ⌈B / 256⌉ nested blocks.

/// bitsandbytes' serialized 4-bit layout (`Linear4bit._save_to_state_dict` with
/// `QuantState.as_dict(packed=True)`, what transformers writes for a `load_in_4bit` model), for a
/// weight named `W` (e.g. `model.layers.0.self_attn.q_proj.weight`):
///
/// | tensor | dtype, shape | holds |
/// |---|---|---|
/// | `W` | U8 [⌈N/2⌉, 1] | packed nibbles |
/// | `W.absmax` | F32 [B], or U8 [B] when double-quantized | per-block scales |
/// | `W.quant_map` | F32 [16] | the 4-bit code table |
/// | `W.nested_absmax` | F32 [B2] | double quantization only |
/// | `W.nested_quant_map` | F32 [256] | double quantization only (signed dynamic map) |
/// | `W.quant_state.bitsandbytes__nf4` (or `__fp4`) | U8 | JSON (Python `json.dumps`) of quant_type, blocksize, dtype, shape, and nested_blocksize, nested_dtype, nested_offset |
extension FourBitTensor {
    /// The safetensors entries of this tensor stored as `name`; `dtype` is the torch dtype the
    /// weight dequantizes to (`"float32"`, `"bfloat16"`, `"float16"`).
    public func safeTensorsEntries(name: String, dtype: String = "float32") -> [SafeTensorsWriter.Entry] {
        func f32(_ suffix: String, _ v: [Float]) -> SafeTensorsWriter.Entry {
            .float32(name: name + suffix, shape: [v.count], values: v)
        }
        var out = [SafeTensorsWriter.Entry(name: name, dtype: .u8, shape: [packed.count, 1], bytes: packed.array)]
        out.append(f32(".quant_map", code))
        var json = "{\"quant_type\": \"\(type.rawValue)\", \"blocksize\": \(blocksize), \"dtype\": \"\(dtype)\", "
            + "\"shape\": [\(shape.map(String.init).joined(separator: ", "))]"
        switch scales {
        case .plain(let a):
            out.append(f32(".absmax", a.array))
        case .nested(let n):
            out.append(SafeTensorsWriter.Entry(name: name + ".absmax", dtype: .u8, shape: [n.codes.count], bytes: n.codes.array))
            out.append(f32(".nested_absmax", n.absmax.array))
            out.append(f32(".nested_quant_map", n.code))
            // Python writes `offset.item()`: the float32 offset as a double, shortest repr.
            json += ", \"nested_blocksize\": \(n.blocksize), \"nested_dtype\": \"float32\", \"nested_offset\": \(Double(n.offset))"
        }
        json += "}"
        out.append(SafeTensorsWriter.Entry(name: name + ".quant_state.bitsandbytes__" + type.rawValue, dtype: .u8,
                                           shape: [json.utf8.count], bytes: Array(json.utf8)))
        return out
    }

    /// Whether `collection` holds `name` in bitsandbytes' 4-bit layout (its quant_state entry exists).
    public static func isStored(_ name: String, in collection: SafeTensorsCollection) -> Bool {
        FourBitType.allCases.contains { collection.contains(name + ".quant_state.bitsandbytes__" + $0.rawValue) }
    }

    /// Reads the 4-bit tensor stored as `name` in bitsandbytes' layout, checking that every part
    /// is present and fits together; nil when `name` is not stored that way.
    /// - Throws: ``QuantError/malformed(tensor:what:)`` naming the file and the part that is wrong.
    public static func load(_ name: String, from collection: SafeTensorsCollection) throws -> FourBitTensor? {
        guard let type = FourBitType.allCases.first(where: {
            collection.contains(name + ".quant_state.bitsandbytes__" + $0.rawValue)
        }) else { return nil }
        let file = collection.file(containing: name)?.path ?? collection.directory
        func bad(_ what: String) -> QuantError { .malformed(tensor: "\(file): \(name)", what: what) }
        func raw(_ suffix: String) throws -> (info: SafeTensorInfo, bytes: [UInt8]) {
            guard let info = collection.info(name + suffix) else { throw bad("missing tensor '\(name + suffix)'") }
            return (info, [UInt8](try collection.bytes(name + suffix)))
        }
        func floats(_ suffix: String, count: Int) throws -> [Float] {
            let (info, _) = try raw(suffix)
            guard info.dtype == .f32, info.elementCount == count else {
                throw bad("'\(name + suffix)' is \(info.dtype.rawValue) \(info.shape), expected F32 [\(count)]")
            }
            return try collection.floats(name + suffix)
        }

        // The JSON part: quant_type, blocksize, dtype, shape (+ nested_*).
        let stateBytes = try raw(".quant_state.bitsandbytes__" + type.rawValue).bytes
        let state: JSONValue
        do { state = try JSONParser.parse(stateBytes) } catch {
            throw bad("quant_state is not JSON (\(error))")
        }
        guard state["quant_type"]?.stringValue == type.rawValue else {
            throw bad("quant_state says quant_type \(state["quant_type"]?.stringValue ?? "nothing"), its name says \(type.rawValue)")
        }
        guard let blocksize = state["blocksize"]?.intValue, blocksizes.contains(blocksize) else {
            throw bad("quant_state has no valid blocksize (bitsandbytes uses 32 … 4096)")
        }
        guard let dims = state["shape"]?.arrayValue?.compactMap(\.intValue), !dims.isEmpty, dims.allSatisfy({ $0 > 0 }) else {
            throw bad("quant_state has no valid shape")
        }
        let n = dims.reduce(1, *), blocks = (n + blocksize - 1) / blocksize

        // Packed nibbles: any storage dtype (bnb_4bit_quant_storage) as long as the bytes fit.
        let (winfo, packed) = try raw("")
        guard packed.count == (n + 1) / 2 else {
            throw bad("\(packed.count) packed bytes (\(winfo.dtype.rawValue) \(winfo.shape)) for shape \(dims), expected \((n + 1) / 2)")
        }
        let quantMap = try floats(".quant_map", count: 16)
        guard quantMap == type.code else {
            throw bad("quant_map is not bitsandbytes' \(type.rawValue) table; only the standard tables are supported")
        }

        let scales: Scales
        if collection.contains(name + ".nested_absmax") {
            let (ainfo, codes) = try raw(".absmax")
            guard ainfo.dtype == .u8, codes.count == blocks else {
                throw bad("double-quantized absmax is \(ainfo.dtype.rawValue) \(ainfo.shape), expected U8 [\(blocks)]")
            }
            guard let nb = state["nested_blocksize"]?.intValue, nb > 0 else { throw bad("quant_state has no nested_blocksize") }
            guard let offset = state["nested_offset"]?.doubleValue else { throw bad("quant_state has no nested_offset") }
            let nested = try floats(".nested_absmax", count: (blocks + nb - 1) / nb)
            let nestedMap = try floats(".nested_quant_map", count: 256)
            scales = .nested(NestedScales(codes: Buffer(codes), absmax: Buffer(nested), offset: Float(offset),
                                          blocksize: nb, code: nestedMap))
        } else {
            scales = .plain(Buffer(try floats(".absmax", count: blocks)))
        }
        do {
            return try FourBitTensor(type: type, shape: dims, blocksize: blocksize, packed: Buffer(packed), scales: scales)
        } catch let e as QuantError {
            throw bad(e.description)
        }
    }
}
