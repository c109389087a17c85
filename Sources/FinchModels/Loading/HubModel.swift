import FinchFormats
import FinchNet
import Foundation

/// Models and adapters named by their Hub id (`ORG/NAME[@REVISION][:FILE]`), through the Hugging Face
/// cache (`HubClient`): only the files Finch reads are fetched. A model: `config.json`, the tokenizer's
/// files and `model.safetensors` or the shards its index names; or one GGUF file, chosen by `:FILE`
/// (`--gguf-file`: a file name, or a quant type such as `Q4_K_M`) when the repository has several. An
/// adapter: `adapter_config.json`, `adapter_model.safetensors` and the tokenizer's files when it has them.
public enum HubModel {
    /// The client every resolution uses: the environment's settings; the command line sets its
    /// progress and notices.
    nonisolated(unsafe) public static var client = HubClient()

    /// The tokenizer files Finch reads when a repository has them.
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja"]

    public enum Kind: Sendable { case model, adapter }

    /// The local path of `repo` (a snapshot folder, or a GGUF file in it), fetched into the cache as needed.
    /// Runs the Hub's requests on a task of their own and waits: call it from synchronous code.
    public static func resolve(_ repo: HubRepoID, kind: Kind) throws -> String {
        let client = self.client
        return try HTTP.wait { try await resolveAsync(repo, kind: kind, client: client) }
    }

    public static func resolveAsync(_ repo: HubRepoID, kind: Kind, client: HubClient) async throws -> String {
        let listing = try await client.listing(repo)
        let present = Set(listing.files)
        func lacking(_ what: String, _ advice: String) -> HubError {
            listing.fromCache
                ? HubError(.notCached, repo.description, "the cached snapshot \(listing.commit) has no \(what)",
                           advice: "download the model once with the network on (unset HF_HUB_OFFLINE)")
                : HubError(.unusable, repo.description, "the repository has no \(what)", advice: advice)
        }
        if kind == .adapter {
            guard present.contains("adapter_config.json") else {
                throw lacking("adapter_config.json", "give a PEFT adapter's repository (adapter_config.json + adapter_model.safetensors)")
            }
            guard present.contains("adapter_model.safetensors") else {
                throw lacking("adapter_model.safetensors", present.contains("adapter_model.bin")
                              ? "it has only adapter_model.bin, a pickle, which Finch never loads: convert it with PEFT's save_pretrained(safe_serialization=True)"
                              : "give a PEFT adapter's repository")
            }
            let files = ["adapter_config.json", "adapter_model.safetensors"] + tokenizerFiles.filter(present.contains)
            return try await client.fetch(repo, commit: listing.commit, files: files)
        }
        let ggufs = listing.files.filter { $0.lowercased().hasSuffix(".gguf") }
        if let wanted = repo.file {
            let file = try chooseGGUF(ggufs, wanted: wanted, repo: repo, fromCache: listing.fromCache)
            return try await client.fetch(repo, commit: listing.commit, files: [file]) + "/" + file
        }
        if present.contains("config.json") {
            guard present.contains("tokenizer.json") else {
                throw lacking("tokenizer.json", "Finch reads a model's tokenizer from tokenizer.json (a repository with only tokenizer.model / vocab files cannot be used yet)")
            }
            var files = ["config.json", "generation_config.json"].filter(present.contains) + tokenizerFiles.filter(present.contains)
            if present.contains("model.safetensors") {
                files.append("model.safetensors")
                return try await client.fetch(repo, commit: listing.commit, files: files)
            }
            guard present.contains("model.safetensors.index.json") else {
                if !ggufs.isEmpty { return try await gguf(repo, listing: listing, ggufs: ggufs, client: client) }
                let pickles = listing.files.contains { $0.hasSuffix(".bin") || $0.hasSuffix(".pt") || $0.hasSuffix(".pth") }
                throw lacking("model.safetensors (or model.safetensors.index.json)", pickles
                              ? "it has only PyTorch pickles (.bin), which Finch never loads: use a repository with safetensors weights"
                              : "give a repository with safetensors weights, or a GGUF one")
            }
            let snapshot = try await client.fetch(repo, commit: listing.commit, files: files + ["model.safetensors.index.json"])
            let index = snapshot + "/model.safetensors.index.json"
            let json = try JSONParser.parse(try String(contentsOfFile: index, encoding: .utf8))
            guard case .object(let map)? = json["weight_map"] else {
                throw HubError(.unusable, repo.description, "model.safetensors.index.json has no weight_map", advice: "the repository's index is broken")
            }
            var shards: [String] = []
            for (_, v) in map {
                guard let s = v.stringValue, !s.contains(".."), !s.hasPrefix("/") else {
                    throw HubError(.unusable, repo.description, "model.safetensors.index.json names a shard outside the repository", advice: "the repository's index is broken")
                }
                if !shards.contains(s) { shards.append(s) }
            }
            for s in shards where !present.contains(s) { throw lacking("\(s) (named by model.safetensors.index.json)", "the repository is incomplete") }
            return try await client.fetch(repo, commit: listing.commit, files: shards.sorted())
        }
        if !ggufs.isEmpty { return try await gguf(repo, listing: listing, ggufs: ggufs, client: client) }
        throw lacking("config.json or GGUF file", "give a model repository: safetensors with config.json and tokenizer.json, or GGUF files")
    }

    static func gguf(_ repo: HubRepoID, listing: HubListing, ggufs: [String], client: HubClient) async throws -> String {
        let whole = ggufs.filter { !isSplit($0) }
        guard whole.count == 1 else {
            throw HubError(.unusable, repo.description, "the repository has \(ggufs.count) GGUF files: \(ggufs.joined(separator: ", "))",
                           advice: "choose one with --gguf-file NAME or a quant type (e.g. --gguf-file Q4_K_M), or ORG/NAME:Q4_K_M")
        }
        return try await client.fetch(repo, commit: listing.commit, files: whole) + "/" + whole[0]
    }

    static func isSplit(_ f: String) -> Bool {
        f.range(of: #"-\d{5}-of-\d{5}\.gguf$"#, options: [.regularExpression, .caseInsensitive]) != nil
    }

    /// The GGUF file `wanted` names: a file of that name (or path), else the one whose name holds it as a
    /// quant type (`Q4_K_M` in `model-Q4_K_M.gguf`, not in `model-Q4_K_M_L.gguf`).
    static func chooseGGUF(_ ggufs: [String], wanted: String, repo: HubRepoID, fromCache: Bool) throws -> String {
        if let exact = ggufs.first(where: { $0 == wanted || ($0 as NSString).lastPathComponent == wanted }) {
            guard !isSplit(exact) else { throw splitError(exact, repo) }
            return exact
        }
        let w = wanted.lowercased()
        let matches = ggufs.filter { f in
            let name = (f as NSString).lastPathComponent.lowercased()
            var from = name.startIndex
            while let r = name.range(of: w, range: from..<name.endIndex) {
                let before = r.lowerBound == name.startIndex ? nil : name[name.index(before: r.lowerBound)]
                let after = r.upperBound == name.endIndex ? nil : name[r.upperBound]
                if !(before.map { $0.isLetter || $0.isNumber } ?? false), !(after.map { $0.isLetter || $0.isNumber || $0 == "_" } ?? false) { return true }
                from = name.index(after: r.lowerBound)
            }
            return false
        }
        if matches.count == 1 {
            guard !isSplit(matches[0]) else { throw splitError(matches[0], repo) }
            return matches[0]
        }
        let all = ggufs.isEmpty ? "none" : ggufs.joined(separator: ", ")
        if matches.isEmpty {
            throw HubError(fromCache ? .notCached : .fileNotFound, repo.description,
                           "no GGUF file \(fromCache ? "in the cache " : "")is named or quantized '\(wanted)' (GGUF files: \(all))",
                           advice: fromCache ? "download it once with the network on (unset HF_HUB_OFFLINE)" : "give one of those names, or its quant type")
        }
        throw HubError(.unusable, repo.description, "'\(wanted)' matches \(matches.count) GGUF files: \(matches.joined(separator: ", "))",
                       advice: "give the whole file name with --gguf-file")
    }

    static func splitError(_ f: String, _ repo: HubRepoID) -> HubError {
        HubError(.unusable, repo.description, "\(f) is one part of a split GGUF, which Finch does not read",
                 advice: "merge the parts with llama.cpp's llama-gguf-split --merge, or choose an unsplit file")
    }
}
