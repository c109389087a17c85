import XCTest
@testable import FinchCore
final class CorePlaceholderTests: XCTestCase { func testPlaceholder() {} }
