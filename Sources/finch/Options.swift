import ArgumentParser
import FinchCore
import FinchModels
import FinchQuant
import FinchTrain

// Settings with a fixed set of values are the library's enums, parsed by swift-argument-parser
// (which names the allowed values in its error), declared once here.
extension WeightDType: ExpressibleByArgument {}
extension BackendKind: ExpressibleByArgument {}
extension QuantCompute: ExpressibleByArgument {}
extension FourBitType: ExpressibleByArgument {}
extension QuantMethod: ExpressibleByArgument {}
extension DatasetFormat: ExpressibleByArgument {}
extension TrainingMethod: ExpressibleByArgument {}
extension TruncationMode: ExpressibleByArgument {}
extension ExportDType: ExpressibleByArgument {}

extension OptimizerKind: ExpressibleByArgument {
    /// Also qlora's and transformers' names (`paged_adamw_32bit`, `adamw_torch`, …).
    public init?(argument: String) { self.init(name: argument) }
}

extension LRSchedule.Kind: ExpressibleByArgument {
    public init?(argument: String) { self.init(settingName: argument) }
}
extension LoRAInit: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
}

// A setting's flag names and help, from its entry in TrainingConfig.settings.
extension NameSpecification {
    static func setting(_ keyPath: PartialKeyPath<TrainingConfig>) -> NameSpecification {
        NameSpecification((TrainingConfig.setting(keyPath)?.flags ?? []).map { .customLong($0) })
    }
}

extension ArgumentHelp {
    static func setting(_ keyPath: PartialKeyPath<TrainingConfig>) -> ArgumentHelp {
        ArgumentHelp(stringLiteral: TrainingConfig.setting(keyPath)?.help ?? "")
    }
}
