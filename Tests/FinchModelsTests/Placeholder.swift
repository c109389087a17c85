import XCTest
@testable import FinchModels
final class ModelsPlaceholderTests: XCTestCase { func testPlaceholder() {} }
